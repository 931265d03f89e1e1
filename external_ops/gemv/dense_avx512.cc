// Dense decode GEMV (gemv.h: DenseGemv) on AVX512: float32 or bf16 weights, fp32 activations.
// The pragma makes the compiler emit AVX512 for this file only; callers check
// pqv::Exec::avx512() first. No Paddle headers here, so nothing else is built for AVX512.
// A thread's rows are read 4 at a time, one from each quarter of its range (rows_in_four_streams
// in gemv.h: more DRAM misses in flight than one stream); the rows left over one at a time.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,avx2")
#include <immintrin.h>

#include <algorithm>

#include "gemv/gemv.h"
#include "simd_avx512.h"

namespace pqv {
namespace {

// 16 weights of a row as fp32: float32 directly, bf16 by moving the bits up (exact).
template <bool BF16>
inline __m512 load_w16(const void* w, int64_t k, __mmask16 mask = 0xFFFF) {
  if constexpr (BF16) {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(w) + k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(w) + k);
  }
}

// MR activation rows against dense weight row n: one sequential stream, 4 partial sums per row.
template <int MR, bool BF16>
inline void dense_row(const DenseGemv& p, int64_t m, int64_t n) {
  const int64_t K = p.K, esize = BF16 ? 2 : 4;
  const char* wr = static_cast<const char*>(p.w) + n * K * esize;
  __m512 acc[MR][4];
  PQV_UNROLL for (int i = 0; i < MR; ++i)
    PQV_UNROLL for (int j = 0; j < 4; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    PQV_UNROLL for (int l = 0; l < esize; ++l)        // 64 weights = esize lines
      _mm_prefetch(wr + (k + kWeightsAhead) * esize + 64 * l, _MM_HINT_T0);
    PQV_UNROLL for (int j = 0; j < 4; ++j) {
      const __m512 wv = load_w16<BF16>(wr, k + 16 * j);
      PQV_UNROLL for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j), acc[i][j]);
    }
  }
  for (; k < K; k += 16) {                            // tail: masked 16-wide steps
    const __mmask16 mask = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    const __m512 wv = load_w16<BF16>(wr, k, mask);
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      acc[i][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, p.x + (m + i) * K + k), acc[i][0]);
  }
  PQV_UNROLL for (int i = 0; i < MR; ++i)
    p.y[(m + i) * p.N + n] = reduce4(acc[i]) + (p.bias ? p.bias[n] : 0.f);
}

template <bool BF16>
void dense_rows(const DenseGemv& p, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) dense_row<4, BF16>(p, m, n);
    for (; m < p.M; ++m) dense_row<1, BF16>(p, m, n);
  }
}

// MR activation rows against the 4 weight rows ns (rows_in_four_streams in gemv.h); one row
// gets 2 accumulators per weight row (enough FMA chains), more rows 1 each (registers).
template <int MR, bool BF16>
inline void dense_row4(const DenseGemv& p, int64_t m, const int64_t* ns) {
  constexpr int J = MR == 1 ? 2 : 1;
  const int64_t K = p.K, esize = BF16 ? 2 : 4, lines = std::max<int64_t>(1, 16 * J * esize / 64);
  const char* wr[4];
  PQV_UNROLL for (int r = 0; r < 4; ++r) wr[r] = static_cast<const char*>(p.w) + ns[r] * K * esize;
  __m512 acc[4][MR][J];
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      PQV_UNROLL for (int j = 0; j < J; ++j) acc[r][i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 * J <= K; k += 16 * J) {
    PQV_UNROLL for (int r = 0; r < 4; ++r)
      for (int64_t l = 0; l < lines; ++l) _mm_prefetch(wr[r] + (k + kWeightsAhead / 4) * esize + 64 * l, _MM_HINT_T0);
    PQV_UNROLL for (int j = 0; j < J; ++j) {
      __m512 xv[MR];
      PQV_UNROLL for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(p.x + (m + i) * K + k + 16 * j);
      PQV_UNROLL for (int r = 0; r < 4; ++r) {
        const __m512 wv = load_w16<BF16>(wr[r], k + 16 * j);
        PQV_UNROLL for (int i = 0; i < MR; ++i) acc[r][i][j] = _mm512_fmadd_ps(wv, xv[i], acc[r][i][j]);
      }
    }
  }
  for (; k < K; k += 16) {
    const __mmask16 mask = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    PQV_UNROLL for (int r = 0; r < 4; ++r) {
      const __m512 wv = load_w16<BF16>(wr[r], k, mask);
      PQV_UNROLL for (int i = 0; i < MR; ++i)
        acc[r][i][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(mask, p.x + (m + i) * K + k), acc[r][i][0]);
    }
  }
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i) {
      __m512 a = acc[r][i][0];
      PQV_UNROLL for (int j = 1; j < J; ++j) a = _mm512_add_ps(a, acc[r][i][j]);
      p.y[(m + i) * p.N + ns[r]] = _mm512_reduce_add_ps(a) + (p.bias ? p.bias[ns[r]] : 0.f);
    }
}

template <bool BF16>
void dense_rows4(const DenseGemv& p, int64_t n0, int64_t n1) {
  rows_in_four_streams(n0, n1, [&](const int64_t* ns) {
    int64_t m = 0;
    for (; m + 4 <= p.M; m += 4) dense_row4<4, BF16>(p, m, ns);
    for (; m < p.M; ++m) dense_row4<1, BF16>(p, m, ns);
  }, [&](int64_t n) { dense_rows<BF16>(p, n, n + 1); });
}

}  // namespace

void dense_gemv_avx512(const DenseGemv& p, int64_t n0, int64_t n1) {
  if (p.bf16) dense_rows4<true>(p, n0, n1); else dense_rows4<false>(p, n0, n1);
}

}  // namespace pqv
