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

// 32 bf16 values of a row from k (masked past K) as one vdpbf16ps operand.
inline __m512bh load_bf16x32(const uint16_t* row, int64_t k, __mmask32 mask) {
  return (__m512bh)_mm512_maskz_loadu_epi16(mask, row + k);
}

// MR x rows (m..m+MR) against the 4 weight rows ns, 32 k at a time; each x vector serves 4
// weight rows and each weight vector MR x rows (4 * MR accumulators).
// Pass `pass` of `passes` over the block also prefetches its share of the next block (each
// stream's next row follows in memory), so DRAM keeps streaming while the later passes compute.
template <int MR>
inline void bf16_row4(const Bf16Gemv& p, int64_t m, const int64_t* ns, int64_t pass, int64_t passes) {
  const int64_t K = p.K;
  const uint16_t* wr[4];
  PQV_UNROLL for (int r = 0; r < 4; ++r) wr[r] = p.w + ns[r] * K;
  __m512 acc[4][MR];
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    const __mmask32 mask = K - k >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << (K - k)) - 1);
    if (passes == 1) {
      PQV_UNROLL for (int r = 0; r < 4; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(wr[r] + k + kWeightsAhead / 4), _MM_HINT_T0);
    } else if (k % (32 * passes) == 32 * pass) {      // one line in `passes` of the next rows
      PQV_UNROLL for (int r = 0; r < 4; ++r) {
        const char* next = reinterpret_cast<const char*>(wr[r] + K);
        _mm_prefetch(next + 2 * (k - 32 * pass), _MM_HINT_T1);
        for (int64_t l = 1; l < passes; ++l) _mm_prefetch(next + 2 * (k - 32 * pass) + 64 * l, _MM_HINT_T1);
      }
    }
    __m512bh xv[MR];
    PQV_UNROLL for (int i = 0; i < MR; ++i) xv[i] = load_bf16x32(p.x + (m + i) * K, k, mask);
    PQV_UNROLL for (int r = 0; r < 4; ++r) {
      const __m512bh wv = load_bf16x32(wr[r], k, mask);
      PQV_UNROLL for (int i = 0; i < MR; ++i) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv, xv[i]);
    }
  }
  PQV_UNROLL for (int r = 0; r < 4; ++r)
    PQV_UNROLL for (int i = 0; i < MR; ++i)
      p.y[(m + i) * p.N + ns[r]] = _mm512_reduce_add_ps(acc[r][i]) + (p.bias ? p.bias[ns[r]] : 0.f);
}

// Every x row against the 4 weight rows ns: 4 x rows at a time, then the rest one by one.
inline void bf16_rows4(const Bf16Gemv& p, const int64_t* ns) {
  const int64_t passes = p.M / 4 + p.M % 4;
  int64_t m = 0, pass = 0;
  for (; m + 4 <= p.M; m += 4) bf16_row4<4>(p, m, ns, pass++, passes);
  for (; m < p.M; ++m) bf16_row4<1>(p, m, ns, pass++, passes);
}

}  // namespace

void bf16_gemv_avx512(const Bf16Gemv& p, int64_t n0, int64_t n1) {
  rows_in_four_streams(n0, n1, [&](const int64_t* ns) { bf16_rows4(p, ns); }, [&](int64_t n) {
    const int64_t ns[4] = {n, n, n, n};             // a leftover row: computed 4 times, written once each
    bf16_rows4(p, ns);
  });
}

void dense_gemv_avx512(const DenseGemv& p, int64_t n0, int64_t n1) {
  if (p.bf16) dense_rows4<true>(p, n0, n1); else dense_rows4<false>(p, n0, n1);
}

}  // namespace pqv
