// Prefill GEMMs on weights that oneDNN cannot read as they are held (int8 / int4 weight-only,
// bf16 weights of a float32 model): they are converted a tile at a time and each tile goes through
// one oneDNN GEMM (linear/weight_only_op.cc, linear/linear_op.cc).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common.h"
#include "gemm/dnnl_gemm.h"

namespace pqv {

// Converted weights per GEMM, at least kTileMinRows rows. On a Xeon with AMX (2 MB L2 per
// core) 2 MB tiles against the 32 MB ones before, int4 in bf16 as a fraction of the dense bf16
// GEMM, alternated: 512x2048x11008 0.92-0.93 vs 0.88, 512x11008x2048 0.89 vs 0.83-0.86,
// 128x2048x11008 0.80-0.82 vs 0.80-0.86 (noise); the fp32 int8 / int4 paths 0.96 / 0.81-0.84 vs
// 0.92-0.94 / 0.81-0.82 of the fp32 GEMM. 256-row tiles were no faster on AMD Zen 4.
constexpr int64_t kTileBytes = int64_t(2) << 20;
constexpr int64_t kTileMinRows = 64;

// Weight rows [n0, n0 + rows) made into a tile (rows, K) of T (float, or bf16 bits: uint16_t) by
// dequant(n0, b, e, tile) (rows [b, e) of the tile, threads over rows), then one oneDNN GEMM of x
// (M, K), same T, against it into y[:, n0:], for every tile.
template <typename T, typename Dequant>
void tile_gemm(const T* x, float* y, const float* bias, const float* col_scale, int64_t M, int64_t N, int64_t K,
               int nt, Dequant dequant) {
  const Dt dt = std::is_same<T, float>::value ? Dt::f32 : Dt::bf16;
  // tiles of equal rows, a multiple of 64 (8192 + 2816 rows, or a 10922-row tile, ran oneDNN's tails)
  const int64_t cap = std::max<int64_t>(kTileMinRows, kTileBytes / (K * int64_t(sizeof(T))));
  const int64_t tiles = (N + cap - 1) / cap;
  const int64_t tile_rows = std::min(N, ((N + tiles - 1) / tiles + 63) / 64 * 64);
  static thread_local std::vector<T> kept;     // a fresh buffer would page-fault in every call
  if (kept.size() < size_t(tile_rows * K)) kept.resize(tile_rows * K);
  T* tile = kept.data();                       // this thread's buffer (the workers have their own `kept`)
  for (int64_t n0 = 0; n0 < N; n0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, N - n0);
    parallel_rows(rows, nt, [&](int64_t b, int64_t e) { dequant(n0, b, e, tile); });
    Gemm g{x, tile, bias ? bias + n0 : nullptr, y + n0, dt, Dt::f32, M, rows, K, N,
           col_scale ? col_scale + n0 : nullptr};
    dnnl_gemm(g, nt);
  }
}

}  // namespace pqv
