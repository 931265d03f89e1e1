// The paged attention kernel's inner loops (attention_kernels.h: AttnKernelsT) on AVX512, for
// float and bf16 K / V rows. The pragma makes the compiler emit AVX512 for this file only; callers
// check pqv::Exec::avx512() and D % 16 == 0 first. No Paddle headers here.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "attention/attention_kernels.h"
#include "simd_avx512.h"

namespace pqv {
namespace {

// 16 values of a K / V row from element d as floats: float32 directly, bf16 bits widened (exact).
inline __m512 load_row16(const float* row, int64_t d) { return _mm512_loadu_ps(row + d); }
inline __m512 load_row16(const uint16_t* row, int64_t d) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + d));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline float row_value(const float* row, int64_t d) { return row[d]; }
inline float row_value(const uint16_t* row, int64_t d) {
  return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(row[d]) << 16))));
}
// The prefetch of element d of a row read 16 elements at a time: one per 64 bytes read.
template <typename T>
inline void prefetch_row(const T* row, int64_t d) {
  if (sizeof(T) == 4 || d % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + d), _MM_HINT_T0);
}

// r[i] = sum of the 16 lanes of a[i]: a transpose-and-add tree, ~3 instructions per sum
// instead of ~8 for a separate horizontal reduction of each vector.
// Always inlined: as a call, its 16 inputs went through the stack (measured ~5% of decode).
inline __attribute__((always_inline)) __m512 reduce16(const __m512 a[16]) {
  __m512 b[8], c[4];
  PQV_UNROLL for (int i = 0; i < 8; ++i)
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  PQV_UNROLL for (int i = 0; i < 4; ++i)
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xEE));
  const __m512 e0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x44), _mm512_shuffle_f32x4(c[0], c[1], 0xEE));
  const __m512 e1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x44), _mm512_shuffle_f32x4(c[2], c[3], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_f32x4(e0, e1, 0x88), _mm512_shuffle_f32x4(e0, e1, 0xDD));
}

// RB query rows x nj (<= JB) K rows, RB * JB <= 32: one accumulator per dot product over D (each
// q and K vector loaded once per block, not once per dot product), then one reduce16 per 16 of
// them; lane i of the reduced pair (sums[0], sums[1]) is s[i / JB][i % JB].
template <int RB, int JB, typename T>
void scores_block(const float* q, int64_t D, const T* const* k, int64_t nj, float* s, int64_t lds,
                  const T* const* ahead) {
  static_assert(RB * JB <= 32 && JB <= 16, "at most two reduce16 per block");
  constexpr int NA = RB * JB;
  const T* kr[JB];
  PQV_UNROLL for (int j = 0; j < JB; ++j) kr[j] = k[j < nj ? j : 0];           // pad with a valid row, not stored
  __m512 a[32];                                   // a[NA..32) stay zero: the second reduce16's padding
  PQV_UNROLL for (int i = 0; i < 32; ++i) a[i] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d += 16) {
    if (ahead)
      for (int64_t j = 0; j < nj; ++j) prefetch_row(ahead[j], d);
    __m512 kv[JB];
    PQV_UNROLL for (int j = 0; j < JB; ++j) kv[j] = load_row16(kr[j], d);
    PQV_UNROLL for (int r = 0; r < RB; ++r) {
      const __m512 qv = _mm512_loadu_ps(q + r * D + d);
      PQV_UNROLL for (int j = 0; j < JB; ++j) a[r * JB + j] = _mm512_fmadd_ps(qv, kv[j], a[r * JB + j]);
    }
  }
  const __m512 sums[2] = {reduce16(a), NA > 16 ? reduce16(a + 16) : _mm512_setzero_ps()};
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    _mm512_mask_storeu_ps(s + r * lds, static_cast<__mmask16>((1u << nj) - 1),
                          _mm512_permutex2var_ps(sums[0], _mm512_add_epi32(lanes, _mm512_set1_epi32(r * JB)), sums[1]));
}

// Rows [r0, r0 + RB) against all n K rows, JB at a time.
template <int RB, int JB, typename T>
void scores_rows(const float* q, const T* const* k, int64_t n, int64_t D, float* s, int64_t lds,
                 const T* const* ahead) {
  for (int64_t j0 = 0; j0 < n; j0 += JB)
    scores_block<RB, JB, T>(q, D, k + j0, std::min<int64_t>(JB, n - j0), s + j0, lds, ahead ? ahead + j0 : nullptr);
}

// Blocks of 4 rows x 4 K rows; a remainder of 1, 2 or 3 rows takes 16, 8 or 5 K rows per block
// so its reduce16 is (nearly) full. 5-7 rows (the G of Qwen2-VL-2B, Qwen2.5-VL-7B and -32B) take a
// 5- or 6-row block x 4 K rows instead: in one pass, one q load serves 4 FMAs (decode scores per
// position, data in L2: 6 rows 13 ns instead of 19, 7 rows 17 instead of 23; 8 rows stay 4 + 4:
// 6 + 2 and 8 x 2 or 8 x 3 were slower). The first pass over the K rows prefetches `ahead`.
template <typename T>
void scores_avx512(const float* q, int64_t R, const T* const* k, int64_t n, int64_t D, float* s, int64_t lds,
                   const T* const* ahead) {
  switch (R) {
    case 5: return scores_rows<5, 4, T>(q, k, n, D, s, lds, ahead);
    case 6: return scores_rows<6, 4, T>(q, k, n, D, s, lds, ahead);
    case 7:
      scores_rows<6, 4, T>(q, k, n, D, s, lds, ahead);
      return scores_rows<1, 16, T>(q + 6 * D, k, n, D, s + 6 * lds, lds, nullptr);
    default: break;
  }
  const int64_t R4 = R / 4 * 4;
  for (int64_t r0 = 0; r0 < R4; r0 += 4, ahead = nullptr)
    scores_rows<4, 4, T>(q + r0 * D, k, n, D, s + r0 * lds, lds, ahead);
  const float* qr = q + R4 * D;
  float* sr = s + R4 * lds;
  switch (R - R4) {
    case 1: scores_rows<1, 16, T>(qr, k, n, D, sr, lds, ahead); break;
    case 2: scores_rows<2, 8, T>(qr, k, n, D, sr, lds, ahead); break;
    case 3: scores_rows<3, 5, T>(qr, k, n, D, sr, lds, ahead); break;
    default: break;
  }
}

// RB (<= 8) rows x DC (<= 4; <= 3 past 6 rows) 16-float chunks of acc stay in registers over all
// n rows of v, from column d0: each v vector is loaded once per RB rows and each p once per DC
// chunks.
template <int RB, int DC, typename T>
void accumulate_block(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, const T* const* v,
                      int64_t n, int64_t D, int64_t d0, const T* const* ahead) {
  __m512 a[RB][DC];
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    PQV_UNROLL for (int c = 0; c < DC; ++c)
      a[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc + r * D + d0 + 16 * c), _mm512_set1_ps(alpha[r]));
  for (int64_t j = 0; j < n; ++j) {
    if (ahead)
      PQV_UNROLL for (int c = 0; c < DC; ++c) prefetch_row(ahead[j], d0 + 16 * c);
    __m512 vv[DC];
    PQV_UNROLL for (int c = 0; c < DC; ++c) vv[c] = load_row16(v[j], d0 + 16 * c);
    PQV_UNROLL for (int r = 0; r < RB; ++r) {
      const __m512 pv = _mm512_set1_ps(p[r * pr + j * pj]);
      PQV_UNROLL for (int c = 0; c < DC; ++c) a[r][c] = _mm512_fmadd_ps(pv, vv[c], a[r][c]);
    }
  }
  PQV_UNROLL for (int r = 0; r < RB; ++r)
    PQV_UNROLL for (int c = 0; c < DC; ++c) _mm512_storeu_ps(acc + r * D + d0 + 16 * c, a[r][c]);
}

// DC = 4 chunks per block up to 6 rows, 3 for 7 or 8 (RB * DC accumulators + DC v vectors + a
// broadcast within the 32 registers).
template <int RB, typename T>
void accumulate_rows(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, const T* const* v,
                     int64_t n, int64_t D, const T* const* ahead) {
  constexpr int64_t kMaxDC = RB <= 6 ? 4 : 3;
  for (int64_t d0 = 0; d0 < D; d0 += 16 * kMaxDC) {
    switch (std::min<int64_t>(kMaxDC, (D - d0) / 16)) {
      case 1: accumulate_block<RB, 1, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      case 2: accumulate_block<RB, 2, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      case 3: accumulate_block<RB, 3, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
      default: accumulate_block<RB, kMaxDC, T>(acc, alpha, p, pr, pj, v, n, D, d0, ahead); break;
    }
  }
}

// Rows in ceil(R / 8) groups of near-equal size (9 rows: 5 + 4, not 8 + 1: a 1-row pass loads a
// v vector per FMA); the first group's pass over v prefetches `ahead`.
template <typename T>
void accumulate_avx512(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, int64_t R,
                       const T* const* v, int64_t n, int64_t D, const T* const* ahead) {
  using Fn = void (*)(float*, const float*, const float*, int64_t, int64_t, const T* const*, int64_t, int64_t,
                      const T* const*);
  static const Fn by_rows[8] = {accumulate_rows<1, T>, accumulate_rows<2, T>, accumulate_rows<3, T>,
                                accumulate_rows<4, T>, accumulate_rows<5, T>, accumulate_rows<6, T>,
                                accumulate_rows<7, T>, accumulate_rows<8, T>};
  const int64_t groups = (R + 7) / 8;
  for (int64_t g = 0, r0 = 0; g < groups; ++g, ahead = nullptr) {
    const int64_t r1 = R * (g + 1) / groups;
    by_rows[r1 - r0 - 1](acc + r0 * D, alpha + r0, p + r0 * pr, pr, pj, v, n, D, ahead);
    r0 = r1;
  }
}

// Up to 6 K rows x RV vectors (16 query rows each) of st: per d one broadcast of each k[j][d]
// and one load of each qt vector feed 6 * RV FMAs; no horizontal sums.
template <int RV, typename T>
void scores_t_block(const float* qt, int64_t Rp, const T* const* k, int64_t nj, int64_t D, float* st) {
  const T* kr[6];
  PQV_UNROLL for (int j = 0; j < 6; ++j) kr[j] = k[j < nj ? j : 0];            // pad with a valid row, not stored
  __m512 a[6][RV];
  PQV_UNROLL for (int j = 0; j < 6; ++j)
    PQV_UNROLL for (int v = 0; v < RV; ++v) a[j][v] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    __m512 qv[RV];
    PQV_UNROLL for (int v = 0; v < RV; ++v) qv[v] = _mm512_loadu_ps(qt + d * Rp + 16 * v);
    PQV_UNROLL for (int j = 0; j < 6; ++j) {
      const __m512 kb = _mm512_set1_ps(row_value(kr[j], d));
      PQV_UNROLL for (int v = 0; v < RV; ++v) a[j][v] = _mm512_fmadd_ps(kb, qv[v], a[j][v]);
    }
  }
  PQV_UNROLL for (int j = 0; j < nj; ++j)
    PQV_UNROLL for (int v = 0; v < RV; ++v) _mm512_storeu_ps(st + j * Rp + 16 * v, a[j][v]);
}

template <typename T>
void scores_t_avx512(const float* qt, int64_t Rp, const T* const* k, int64_t n, int64_t D, float* st) {
  using Fn = void (*)(const float*, int64_t, const T* const*, int64_t, int64_t, float*);
  static const Fn by_vectors[4] = {scores_t_block<1, T>, scores_t_block<2, T>, scores_t_block<3, T>,
                                   scores_t_block<4, T>};
  for (int64_t j0 = 0; j0 < n; j0 += 6)
    for (int64_t r0 = 0; r0 < Rp; r0 += 64)
      by_vectors[std::min<int64_t>(4, (Rp - r0) / 16) - 1](qt + r0, Rp, k + j0, std::min<int64_t>(6, n - j0), D,
                                                           st + j0 * Rp + r0);
}

float softmax_step_avx512(float* s, int64_t n, float* m, float* l) {
  const __mmask16 m0 = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
  const __mmask16 m1 = n <= 16 ? 0 : n >= 32 ? 0xFFFF : static_cast<__mmask16>((1u << (n - 16)) - 1);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 s0 = _mm512_mask_loadu_ps(ninf, m0, s), s1 = _mm512_mask_loadu_ps(ninf, m1, s + 16);
  const float new_m = std::max(*m, _mm512_reduce_max_ps(_mm512_max_ps(s0, s1)));
  const __m512 mv = _mm512_set1_ps(new_m);
  const __m512 e0 = _mm512_maskz_mov_ps(m0, exp512(_mm512_sub_ps(s0, mv)));
  const __m512 e1 = _mm512_maskz_mov_ps(m1, exp512(_mm512_sub_ps(s1, mv)));
  _mm512_mask_storeu_ps(s, m0, e0);
  _mm512_mask_storeu_ps(s + 16, m1, e1);
  // 0 on the first chunk (m = -inf); 1 when the max did not move (most chunks of a long row):
  // skipping the scalar exp there took ~20% off the decode softmax
  const float alpha = new_m == *m ? 1.f : std::exp(*m - new_m);
  *l = *l * alpha + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
  *m = new_m;
  return alpha;
}

void softmax_t_avx512(float* st, int64_t n, int64_t Rp, const int32_t* valid, float* m, float* l, float* alpha) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r0 = 0; r0 < Rp; r0 += 16) {
    const __m512i seen = _mm512_loadu_si512(valid + r0);
    const __m512 old_m = _mm512_loadu_ps(m + r0);
    __m512 new_m = old_m;
    for (int64_t j = 0; j < n; ++j)
      new_m = _mm512_mask_max_ps(new_m, _mm512_cmpgt_epi32_mask(seen, _mm512_set1_epi32(j)), new_m,
                                 _mm512_loadu_ps(st + j * Rp + r0));
    // a column that has seen nothing yet keeps m = -inf; exponentiate against 0 there (all masked)
    const __m512 base = _mm512_mask_mov_ps(new_m, _mm512_cmp_ps_mask(new_m, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
    const __m512 al = exp512(_mm512_sub_ps(old_m, base));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; ++j) {
      const __m512 e = _mm512_maskz_mov_ps(_mm512_cmpgt_epi32_mask(seen, _mm512_set1_epi32(j)),
                                           exp512(_mm512_sub_ps(_mm512_loadu_ps(st + j * Rp + r0), base)));
      _mm512_storeu_ps(st + j * Rp + r0, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_storeu_ps(l + r0, _mm512_fmadd_ps(_mm512_loadu_ps(l + r0), al, sum));
    _mm512_storeu_ps(m + r0, new_m);
    _mm512_storeu_ps(alpha + r0, al);
  }
}
}  // namespace

const AttnKernels kAttnAvx512 = {scores_avx512<float>, softmax_step_avx512, scores_t_avx512<float>,
                                 softmax_t_avx512, accumulate_avx512<float>};
const AttnKernelsBf16 kAttnAvx512Bf16 = {scores_avx512<uint16_t>, softmax_step_avx512, scores_t_avx512<uint16_t>,
                                         softmax_t_avx512, accumulate_avx512<uint16_t>};

}  // namespace pqv
