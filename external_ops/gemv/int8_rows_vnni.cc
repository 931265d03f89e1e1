// Weight-only int8 linear for many activation rows (batched decode, short prefills) on
// AVX512-VNNI, register-blocked: x quantized per 64-block as in weight_only_vnni.cc (same results
// up to summation order, same bound), but the weights are read once for all rows at the VNNI rate.
// Each thread takes panels of 32 weight rows (kPanelRows): it repacks a panel into the layout
// vpdpbusd wants with outputs in lanes (per 4 k, one register of 16 weight rows, made unsigned),
// then every group of kXRows x rows passes over the packed panel while it sits in the L2. The inner
// loop keeps kXRows x 2 int32 tiles (16 outputs each) for one 64-block plus as many fp32 sums:
// per 4 k, 2 weight loads and kXRows broadcasts feed 2 * kXRows vpdpbusd; each block ends with one
// convert and one FMA (the x block's scale) per tile.
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
constexpr int kPanelGroups = 2;            // 16-row groups per panel
constexpr int kPanelRows = kLanes * kPanelGroups;
constexpr int kXRows = 6;                  // x rows per tile: 12 int32 + 12 fp32 + 2 weight registers

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

// Weight rows [0, 16 * NR) of w (N, K) into out: for each dword column c (k = 4c..4c+3) and
// group g, 64 bytes holding rows 16g..16g+15 (row order = lane order), as w + 128 (unsigned).
template <int NR>
void pack_panel(const int8_t* w, int64_t K, int8_t* out) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
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
// cache lines per 64-block of each tile, spread so DRAM reads overlap the arithmetic.
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

// y rows [m, m + MR) x columns [n, n + 16 * NR) from a packed panel.
template <int MR, int NR>
void tile(const int8_t* packed, const Int8Gemv& p, const QuantX& xq, int64_t m, int64_t n, Prefetch& pf) {
  const int64_t K = p.K, B = K / 64;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  const int8_t* x = xq.q + m * K;
  for (int64_t b = 0; b < B; ++b) {
    __m512i d[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) d[i][j] = _mm512_setzero_si512();
    const int8_t* wp = packed + b * 16 * NR * 64;
    pf.step();
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) {
      __m512i wv[NR];
      for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_si512(wp + (c * NR + j) * 64);
      for (int i = 0; i < MR; ++i) {
        const __m512i xb = broadcast4(x + i * K + b * 64 + c * 4);
        for (int j = 0; j < NR; ++j) d[i][j] = _mm512_dpbusd_epi32(d[i][j], wv[j], xb);
      }
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 s = _mm512_set1_ps(xq.scale[(m + i) * B + b]);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), s, acc[i][j]);
    }
  }
  for (int j = 0; j < NR; ++j) {
    const int64_t nj = n + j * kLanes;
    const __m512 scale = _mm512_loadu_ps(p.scales + nj);
    const __m512 bias = p.bias ? _mm512_loadu_ps(p.bias + nj) : _mm512_setzero_ps();
    for (int i = 0; i < MR; ++i) {
      const __m512 dot = _mm512_sub_ps(acc[i][j], _mm512_set1_ps(128.f * xq.off_total[m + i]));
      _mm512_storeu_ps(p.y + (m + i) * p.N + nj, _mm512_fmadd_ps(dot, scale, bias));
    }
  }
}

// Every x row against one packed panel of 16 * NR weight rows starting at n, prefetching the
// `ahead` bytes that follow the panel.
template <int NR>
void panel(const int8_t* packed, const Int8Gemv& p, const QuantX& xq, int64_t n, int64_t ahead) {
  const int64_t steps = (p.M + kXRows - 1) / kXRows * (p.K / 64);
  const int64_t lines = ahead / 64;
  Prefetch pf{reinterpret_cast<const char*>(p.w + (n + NR * kLanes) * p.K), ahead, (lines + steps - 1) / steps};
  int64_t m = 0;
  for (; m + kXRows <= p.M; m += kXRows) tile<kXRows, NR>(packed, p, xq, m, n, pf);
  switch (p.M - m) {
    case 5: return tile<5, NR>(packed, p, xq, m, n, pf);
    case 4: return tile<4, NR>(packed, p, xq, m, n, pf);
    case 3: return tile<3, NR>(packed, p, xq, m, n, pf);
    case 2: return tile<2, NR>(packed, p, xq, m, n, pf);
    case 1: return tile<1, NR>(packed, p, xq, m, n, pf);
    default: return;
  }
}

}  // namespace

void int8_rows_vnni(const Int8Gemv& p, const QuantX& xq, int64_t n0, int64_t n1) {
  std::vector<int8_t> packed(kPanelRows * p.K);
  int64_t n = n0;
  for (; n + kPanelRows <= n1; n += kPanelRows) {
    pack_panel<kPanelGroups>(p.w + n * p.K, p.K, packed.data());
    panel<kPanelGroups>(packed.data(), p, xq, n, std::min<int64_t>(kPanelRows, n1 - n - kPanelRows) * p.K);
  }
  for (; n + kLanes <= n1; n += kLanes) {
    pack_panel<1>(p.w + n * p.K, p.K, packed.data());
    panel<1>(packed.data(), p, xq, n, 0);
  }
  if (n < n1) int8_gemv_vnni(p, xq, n, n1);       // fewer than 16 rows left: one row at a time
}

}  // namespace pqv
