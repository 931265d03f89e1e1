// Weight-only int8 / int4 linear for many activation rows (batched decode, short prefills) on
// AVX512-VNNI, register-blocked: x quantized per block as in weight_only_vnni.cc (same results up
// to summation order, same bound), but the weights are read once for all rows at the VNNI rate.
// Each thread takes panels of 32 weight rows (kPanelRows): it repacks a panel into the layout
// vpdpbusd wants with outputs in lanes (per 4 k, one register of 16 weight rows, as unsigned bytes:
// int8 w + 128, int4 its stored q + 8 unpacked in x's permuted order), then every group of kXRows
// x rows passes over the packed panel while it sits in the L2. The inner loop keeps kXRows x 2
// int32 tiles (16 outputs each) for one x block plus as many fp32 sums: per 4 k, 2 weight loads
// and kXRows broadcasts feed 2 * kXRows vpdpbusd; each block ends with a convert and one FMA (the x
// block's scale; int4 one more: the rows' group scales) per tile.
// Compiled for AVX512 by the pragma; callers check pqv::Exec::avx512() (which includes VNNI).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,avx2")
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemv/gemv.h"

namespace pqv {
namespace {

constexpr int kLanes = 16;                  // weight rows in one register of int32 outputs
constexpr int kPanelGroups = 2;             // 16-row groups per panel
constexpr int kPanelRows = kLanes * kPanelGroups;
constexpr int kXRows = 6;                   // x rows per tile: 12 int32 + 12 fp32 + 2 weight registers

// r[i] = dwords 0..15 of row i  ->  r[c] = dword c of rows 0..15.
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {             // u[4i + j], 128-bit lane L: column 4L + j of rows 4i..4i+3
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i plo = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i phi = _mm512_shuffle_i32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512i qlo = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i qhi = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 1, 3, 1));
    r[j] = _mm512_shuffle_i32x4(plo, qlo, _MM_SHUFFLE(2, 0, 2, 0));
    r[8 + j] = _mm512_shuffle_i32x4(plo, qlo, _MM_SHUFFLE(3, 1, 3, 1));
    r[4 + j] = _mm512_shuffle_i32x4(phi, qhi, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + j] = _mm512_shuffle_i32x4(phi, qhi, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// Byte rows [0, 16 * NR) of w (rows of K bytes) into out: for each dword column c (k = 4c..4c+3)
// and group g, 64 bytes holding rows 16g..16g+15 (row order = lane order), each byte XOR flip.
template <int NR>
void pack_panel(const uint8_t* w, int64_t K, __m512i flip, uint8_t* out) {
  for (int g = 0; g < NR; ++g)
    for (int64_t c0 = 0; c0 < K / 4; c0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = _mm512_xor_si512(_mm512_loadu_si512(w + (g * kLanes + i) * K + c0 * 4), flip);
      transpose16(r);
      for (int c = 0; c < 16; ++c) _mm512_storeu_si512(out + ((c0 + c) * NR + g) * 64, r[c]);
    }
}

// The next panel's bytes, prefetched front to back while the current panel computes: `per_step`
// cache lines per x block of each tile, spread so DRAM reads overlap the arithmetic.
struct Prefetch {
  const char* next;
  int64_t left;      // bytes
  int64_t per_step;  // cache lines
  void step() {
    for (int64_t i = 0; i < per_step && left > 0; ++i, next += 64, left -= 64) _mm_prefetch(next, _MM_HINT_T1);
  }
};

inline __m512i broadcast4(const int8_t* x) {
  int32_t v;
  std::memcpy(&v, x, 4);
  return _mm512_set1_epi32(v);
}

// One int4 row (K/2 bytes of q + 8 nibbles) as K bytes in x's permuted order: per group, the low
// nibbles (even k), then the high nibbles (odd k).
void unpack_int4_row(const uint8_t* w, int64_t K, int64_t group, uint8_t* out) {
  const __m256i mask = _mm256_set1_epi8(0x0F);
  for (int64_t g0 = 0; g0 < K; g0 += group)
    for (int64_t j = 0; j < group / 2; j += 32) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + g0 / 2 + j));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + g0 + j), _mm256_and_si256(raw, mask));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + g0 + group / 2 + j),
                          _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask));
    }
}

// What the tiles of one call share. int8: scales (N,) per row, applied at the end, with the
// 128 * sum(x) offset; int4: wscale, the panel's group scales (G, rows in the panel), applied per
// block with the 8 * sum(x) offset.
struct Job {
  const QuantX& xq;
  const float* scales;
  const float* bias;
  float* y;
  int64_t M, N, K;
  const uint8_t* packed;
  const float* wscale;
};

// y rows [m, m + MR) x columns [n, n + 16 * NR) from a packed panel.
template <int MR, int NR, bool kInt4>
void tile(const Job& t, int64_t m, int64_t n, Prefetch& pf) {
  const int64_t K = t.K, block = t.xq.block, B = K / block;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int8_t* x = t.xq.q + m * K;
  for (int64_t b = 0; b < B; ++b) {
    __m512i d[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) d[i][j] = _mm512_setzero_si512();
    const uint8_t* wp = t.packed + b * block * NR * kLanes;
    const int8_t* xb = x + b * block;
    pf.step();
#pragma GCC unroll 16
    for (int64_t c = 0; c < block / 4; ++c) {
      __m512i wv[NR];
      for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(wp + (c * NR + j) * 64);
      for (int i = 0; i < MR; ++i) {
        const __m512i xv = broadcast4(xb + i * K + c * 4);
        for (int j = 0; j < NR; ++j) d[i][j] = _mm512_dpbusd_epi32(d[i][j], wv[j], xv);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 s = _mm512_set1_ps(t.xq.scale[(m + i) * B + b]);
      if constexpr (kInt4) {               // ws * (sx * sum xq * (q + 8) - 8 * sx * sum xq)
        const __m512 off = _mm512_set1_ps(-8.f * t.xq.off[(m + i) * B + b]);
        for (int j = 0; j < NR; ++j)
          acc[i][j] = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), s, off),
                                      _mm512_loadu_ps(t.wscale + b * NR * kLanes + j * kLanes), acc[i][j]);
      } else {
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), s, acc[i][j]);
      }
    }
  }
  for (int j = 0; j < NR; ++j) {
    const int64_t nj = n + j * kLanes;
    const __m512 bias = t.bias ? _mm512_loadu_ps(t.bias + nj) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) {
      __m512 y = _mm512_add_ps(acc[i][j], bias);
      if constexpr (!kInt4) {
        const __m512 dot = _mm512_sub_ps(acc[i][j], _mm512_set1_ps(128.f * t.xq.off_total[m + i]));
        y = _mm512_fmadd_ps(dot, _mm512_loadu_ps(t.scales + nj), bias);
      }
      _mm512_storeu_ps(t.y + (m + i) * t.N + nj, y);
    }
  }
}

// Every x row against one packed panel of 16 * NR weight rows starting at n, prefetching the
// `ahead` bytes from `next` (the next panel's raw weights).
template <int NR, bool kInt4>
void panel(const Job& t, int64_t n, const uint8_t* next, int64_t ahead) {
  const int64_t steps = (t.M + kXRows - 1) / kXRows * (t.K / t.xq.block);
  Prefetch pf{reinterpret_cast<const char*>(next), ahead, (ahead / 64 + steps - 1) / steps};
  int64_t m = 0;
  for (; m + kXRows <= t.M; m += kXRows) tile<kXRows, NR, kInt4>(t, m, n, pf);
  switch (t.M - m) {
    case 5: return tile<5, NR, kInt4>(t, m, n, pf);
    case 4: return tile<4, NR, kInt4>(t, m, n, pf);
    case 3: return tile<3, NR, kInt4>(t, m, n, pf);
    case 2: return tile<2, NR, kInt4>(t, m, n, pf);
    case 1: return tile<1, NR, kInt4>(t, m, n, pf);
    default: return;
  }
}

// Panels of kPanelRows, then of 16, over [n0, n1); returns the first row left (< 16 rows remain).
// prepare(n, rows) packs rows [n, n + rows) into job.packed (and job.wscale); row_bytes: the raw
// bytes of one weight row, for the prefetch of the next panel.
template <bool kInt4, typename Prepare>
int64_t panels(const Job& job, const uint8_t* w, int64_t row_bytes, int64_t n0, int64_t n1, Prepare prepare) {
  int64_t n = n0;
  for (; n + kPanelRows <= n1; n += kPanelRows) {
    prepare(n, kPanelRows);
    const int64_t next = n + kPanelRows;
    panel<kPanelGroups, kInt4>(job, n, w + next * row_bytes, std::min<int64_t>(kPanelRows, n1 - next) * row_bytes);
  }
  for (; n + kLanes <= n1; n += kLanes) {
    prepare(n, kLanes);
    panel<1, kInt4>(job, n, w, 0);
  }
  return n;
}

// This thread's buffer of at least n elements, kept across calls (a fresh one per call was
// mmapped and page-faulted for large K).
template <typename T, int kSlot>
T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace

void int8_rows_vnni(const Int8Gemv& p, const QuantX& xq, int64_t n0, int64_t n1) {
  uint8_t* packed = scratch<uint8_t, 0>(kPanelRows * p.K);
  const Job job{xq, p.scales, p.bias, p.y, p.M, p.N, p.K, packed, nullptr};
  const uint8_t* w = reinterpret_cast<const uint8_t*>(p.w);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const int64_t n = panels<false>(job, w, p.K, n0, n1, [&](int64_t n, int64_t rows) {
    if (rows == kPanelRows) pack_panel<kPanelGroups>(w + n * p.K, p.K, flip, packed);
    else pack_panel<1>(w + n * p.K, p.K, flip, packed);
  });
  if (n < n1) int8_gemv_vnni(p, xq, n, n1);       // fewer than 16 rows left: one row at a time
}

void int4_rows_vnni(const Int4Gemv& p, const QuantX& xq, int64_t n0, int64_t n1) {
  const int64_t K = p.K, G = K / p.group;
  uint8_t* rows = scratch<uint8_t, 1>(kPanelRows * K);
  uint8_t* packed = scratch<uint8_t, 0>(kPanelRows * K);
  float* wscale = scratch<float, 0>(G * kPanelRows);
  const Job job{xq, nullptr, p.bias, p.y, p.M, p.N, K, packed, wscale};
  const int64_t n = panels<true>(job, p.w, K / 2, n0, n1, [&](int64_t n, int64_t count) {
    for (int64_t r = 0; r < count; ++r) {
      unpack_int4_row(p.w + (n + r) * (K / 2), K, p.group, rows + r * K);
      for (int64_t g = 0; g < G; ++g) wscale[g * count + r] = p.scales[(n + r) * G + g];
    }
    if (count == kPanelRows) pack_panel<kPanelGroups>(rows, K, _mm512_setzero_si512(), packed);
    else pack_panel<1>(rows, K, _mm512_setzero_si512(), packed);
  });
  if (n < n1) int4_gemv_vnni(p, xq, n, n1);
}

}  // namespace pqv
