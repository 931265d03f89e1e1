// Attention on AMX tiles (attention_kernels.h, AmxAttention): the vision towers' blocks in bf16
// models. Compiled for AMX and AVX512 by the pragma; callers check amx_ready() and
// pqv::Exec::fast_bf16() first. No Paddle headers here, so nothing else is built for these instruction sets.
//
// Why fused: through oneDNN (gemm_attention.cc) each 256 x 512 block of fp32 scores goes out to
// the L2 and back (head dim 80: 80 multiply-adds per score), and the S GEMM ran at about half the
// rate of the PV one. Here the scores of 32 keys x 16 query rows stay in an L1 buffer between the
// two tile products, and so does the output of those 16 rows.
//
// Everything is transposed so that the softmax runs down columns, one vector per key holding the
// key's score for 16 query rows (no horizontal max or sum per row):
//   S^T (32 keys x 16 rows) = K (keys x Dp) . Q^T       two tiles of 16 keys, A = K rows, B = Q^T
//   O^T (D x 16 rows)      += V^T (D x 32 keys) . P^T   DT = D / 16 tiles, A = V^T rows, B = P^T
// B operands in the tiles' pair layout ("VNNI": row i holds columns' elements 2i and 2i + 1).
// Online softmax: when a block raises a row's max, O (in L1) and the row's sum are rescaled. (A
// lazy base, moved only when the max grew by e^8, was as fast but ~4x less accurate on peaked
// rows: the largest numerator is then not exactly 1 in bf16.)
// AMX intrinsics need GCC 11 / clang 12; an older compiler builds the stubs at the end (amx_ready()
// false) and the rest of the library as before.
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define PQV_AMX_BUILT 1
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2,amx-tile,amx-bf16")
#endif
#include "attention/attention_kernels.h"

#ifdef PQV_AMX_BUILT
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>

#include "simd_avx512.h"

namespace pqv {
namespace {

constexpr int64_t kTile = 512;            // uint16 elements of one 16 x 64-byte tile
constexpr int64_t kChunkBlocks = 4;      // key blocks per pass over an item's row groups (1-16: the same)

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

void load_tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  _tile_loadconfig(&c);
}

int64_t padded_keys(int64_t keys) { return (keys + kAmxKeys - 1) / kAmxKeys * kAmxKeys; }

// O^T += V^T . P^T for the DT column tiles of one block, P^T already in tile 7, V^T tiles through
// 5 / 6 in turn. Tile ids must be constants. Normally (tiles 0-4 free) each O^T tile has a tile
// of its own, so no load waits on the store of another; pv_block_in_2_3 (while tiles 0 and 1 hold
// the next block's scores) takes its O^T tiles through 2 and 3 in turn.
template <int DT>
inline void pv_block(float* ot, const uint16_t* vt) {
#define PQV_PV(t, C, A)                   \
  if constexpr (t < DT) {                 \
    _tile_loadd(C, ot + (t) * 256, 64);   \
    _tile_loadd(A, vt + (t) * kTile, 64); \
    _tile_dpbf16ps(C, A, 7);              \
  }
#define PQV_STORE(t, C) \
  if constexpr (t < DT) _tile_stored(C, ot + (t) * 256, 64);
  PQV_PV(0, 0, 5) PQV_PV(1, 1, 6) PQV_PV(2, 2, 5) PQV_PV(3, 3, 6) PQV_PV(4, 4, 5)
  PQV_STORE(0, 0) PQV_STORE(1, 1) PQV_STORE(2, 2) PQV_STORE(3, 3) PQV_STORE(4, 4)
}

template <int DT>
inline void pv_block_in_2_3(float* ot, const uint16_t* vt) {
  PQV_PV(0, 2, 5) PQV_STORE(0, 2) PQV_PV(1, 3, 6) PQV_STORE(1, 3) PQV_PV(2, 2, 5) PQV_STORE(2, 2)
  PQV_PV(3, 3, 6) PQV_STORE(3, 3) PQV_PV(4, 2, 5) PQV_STORE(4, 2)
#undef PQV_PV
#undef PQV_STORE
}

template <int DT>
void attend(const AmxAttention& a) {
  constexpr int64_t D = DT * 16;
  const int64_t Dp = amx_padded_depth(D), KC = Dp / 32, kp = padded_keys(a.keys), nb = kp / kAmxKeys;
  float* obuf = a.scratch;                                  // per group O^T (D x 16)
  float* mrow = obuf + a.groups * 16 * D;                   // per group and row: exponent base, sum
  float* lrow = mrow + a.groups * 16;
  std::fill(obuf, obuf + a.groups * 16 * D, 0.f);
  std::fill(mrow, mrow + a.groups * 16, -std::numeric_limits<float>::infinity());
  std::fill(lrow, lrow + a.groups * 16, 0.f);
  alignas(64) float sbuf[2 * kAmxKeys * 16];           // two blocks' S^T, in turn
  alignas(64) uint16_t pbuf[2 * kAmxKeys * 16];        // two blocks' P^T, in turn
  const __m512 sc = _mm512_set1_ps(a.scale), one = _mm512_set1_ps(1.f);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  // P^T pair layout: lanes (2n, 2n + 1) <- (key 2i, key 2i + 1) of row n, from [key 2i | key 2i + 1]
  alignas(64) uint16_t pair_idx[32];
  for (int j = 0; j < 32; ++j) pair_idx[j] = static_cast<uint16_t>((j & 1) * 16 + (j >> 1));
  const __m512i pairs = _mm512_load_si512(pair_idx);
  load_tile_config();
  for (int64_t b0 = 0; b0 < nb; b0 += kChunkBlocks) {
    const int64_t b1 = std::min(nb, b0 + kChunkBlocks);
    for (int64_t g = 0; g < a.groups; ++g) {
      float* ot = obuf + g * 16 * D;
      const uint16_t* qg = a.q + g * KC * kTile;
      __m512 m = _mm512_loadu_ps(mrow + g * 16), l = _mm512_loadu_ps(lrow + g * 16);
      // S^T of block b: keys [32b, 32b + 16) in tile 0, the next 16 in tile 1 (K through 5 / 6, Q^T 4)
      const auto issue_scores = [&](int64_t b) {
        const uint16_t* kb = a.k + b * kAmxKeys * Dp;
        _tile_zero(0);
        _tile_zero(1);
        // operands of successive depth steps in different tiles (4-6, then 7, 2, 3): a load does
        // not wait for the product just issued to have read its tile
#define PQV_S(kc, Q, K0, K1)                           \
  _tile_loadd(Q, qg + (kc) * kTile, 64);               \
  _tile_loadd(K0, kb + (kc) * 32, Dp * 2);             \
  _tile_loadd(K1, kb + 16 * Dp + (kc) * 32, Dp * 2);   \
  _tile_dpbf16ps(0, K0, Q);                            \
  _tile_dpbf16ps(1, K1, Q)
        for (int64_t kc = 0; kc < KC; kc += 2) {
          PQV_S(kc, 4, 5, 6);
          if (kc + 1 < KC) { PQV_S(kc + 1, 7, 2, 3); }
        }
#undef PQV_S
      };
      const auto store_scores = [&](int64_t b) {
        _tile_stored(0, sbuf + (b & 1) * 512, 64);
        _tile_stored(1, sbuf + (b & 1) * 512 + 256, 64);
      };
      const auto apply_pv = [&](int64_t b, bool scores_in_0_1) {
        _tile_loadd(7, pbuf + (b & 1) * 512, 64);
        if (scores_in_0_1) pv_block_in_2_3<DT>(ot, a.v + b * D * kAmxKeys);
        else pv_block<DT>(ot, a.v + b * D * kAmxKeys);
      };
      // Software pipeline: block b + 1's scores are computed on the tiles while the vector units run
      // block b's softmax, and block b - 1's O update comes after it, so that no tile waits right
      // away on vector stores or vector loads on tile stores.
      issue_scores(b0);
      store_scores(b0);
      for (int64_t b = b0; b < b1; ++b) {
        if (b + 1 < b1) issue_scores(b + 1);
        bool pending = b > b0;                               // block b - 1's O update
        const float* sb = sbuf + (b & 1) * 512;
        uint16_t* pb = pbuf + (b & 1) * 512;
        // softmax down the 32 key rows (keys past the span: numerators 0)
        const int64_t valid = std::min<int64_t>(kAmxKeys, a.keys - b * kAmxKeys);
        __m512 mx = _mm512_load_ps(sb);
        for (int64_t j = 1; j < valid; ++j) mx = _mm512_max_ps(mx, _mm512_load_ps(sb + j * 16));
        const __mmask16 jump = _mm512_cmp_ps_mask(mx, m, _CMP_GT_OQ);
        if (jump) {                                          // also the first block (max -inf)
          const __mmask16 seen = jump & _mm512_cmp_ps_mask(m, ninf, _CMP_NEQ_OQ);
          if (seen) {
            if (pending) apply_pv(b - 1, b + 1 < b1), pending = false;   // O up to b - 1 first
            const __m512 alpha = _mm512_mask_mov_ps(one, seen, exp512_for_bf16(_mm512_mul_ps(_mm512_sub_ps(m, mx), sc)));
            l = _mm512_mul_ps(l, alpha);
            for (int64_t d = 0; d < D; ++d) _mm512_storeu_ps(ot + d * 16, _mm512_mul_ps(_mm512_loadu_ps(ot + d * 16), alpha));
          }
          m = _mm512_mask_mov_ps(m, jump, mx);
        }
        const __m512 base = _mm512_mul_ps(m, sc);
        for (int64_t i = 0; i < kAmxKeys / 2; ++i) {
          const int64_t j = 2 * i;
          const __m512 e0 = j < valid ? exp512_for_bf16(_mm512_fmsub_ps(_mm512_load_ps(sb + j * 16), sc, base))
                                      : _mm512_setzero_ps();
          const __m512 e1 = j + 1 < valid ? exp512_for_bf16(_mm512_fmsub_ps(_mm512_load_ps(sb + j * 16 + 16), sc, base))
                                          : _mm512_setzero_ps();
          l = _mm512_add_ps(l, _mm512_add_ps(e0, e1));
          const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(e1, e0);       // [key j | key j + 1]
          _mm512_store_si512(pb + i * 32, _mm512_permutexvar_epi16(pairs, both));
        }
        if (b + 1 < b1) store_scores(b + 1);
        if (pending) apply_pv(b - 1, false);
      }
      apply_pv(b1 - 1, false);
      _mm512_storeu_ps(mrow + g * 16, m);
      _mm512_storeu_ps(lrow + g * 16, l);
    }
  }
  _tile_release();
  for (int64_t r = 0; r < a.rows; ++r) {
    const int64_t g = r / 16, n = r % 16;
    const float inv = 1.f / lrow[r];
    const float* ot = obuf + g * 16 * D;
    float* dst = a.out + r * a.out_stride;
    for (int64_t d = 0; d < D; ++d) dst[d] = ot[d * 16 + n] * inv;
  }
}

}  // namespace

bool amx_ready() {
  static const bool ok = [] {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    if (!(edx & (1u << 24)) || !(edx & (1u << 22))) return false;        // AMX-TILE, AMX-BF16
    constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;             // Linux: ask for the tile state
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
  }();
  return ok;
}

int64_t amx_padded_depth(int64_t D) { return (D + 31) / 32 * 32; }

int64_t amx_k_elems(int64_t keys, int64_t D) { return padded_keys(keys) * amx_padded_depth(D); }

int64_t amx_v_elems(int64_t keys, int64_t D) { return D * padded_keys(keys); }

int64_t amx_scratch_floats(int64_t groups, int64_t D) { return groups * 16 * (D + 2); }

// 32 floats from p (those past `valid` read as 0) as 16 bf16 pairs: lane i = (p[2i], p[2i + 1]).
inline __m512i bf16_pairs(const float* p, int64_t valid) {
  const auto mask = [](int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); };
  const __m512 lo = _mm512_maskz_loadu_ps(mask(valid), p), hi = _mm512_maskz_loadu_ps(mask(valid - 16), p + 16);
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// r[j] <- column j of the 16 x 16 matrix of 32-bit elements whose rows were r[0..15].
inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {                          // u[4i + c]: columns c, c + 4, c + 8, c + 12 of rows 4i..4i+3
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88), v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[c + 8] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[c + 4] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[c + 12] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

// Per group of 16 rows, KC tiles of Q^T in pair layout: tile kc, row i, column n holds
// q[16g + n][32kc + 2i + {0, 1}]; zeros past `rows` and past D. Rows of 16 pairs, transposed.
void amx_pack_q(const float* q, int64_t stride, int64_t rows, int64_t groups, int64_t D, uint16_t* out) {
  const int64_t KC = amx_padded_depth(D) / 32;
  __m512i r[16];
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t kc = 0; kc < KC; ++kc) {
      for (int64_t n = 0; n < 16; ++n)
        r[n] = g * 16 + n < rows ? bf16_pairs(q + (g * 16 + n) * stride + kc * 32, D - kc * 32) : _mm512_setzero_si512();
      transpose16(r);
      uint16_t* tile = out + (g * KC + kc) * kTile;
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(tile + i * 32, r[i]);
    }
}

// K rows as they are (the A operand of S^T), Dp wide and padded to whole blocks with zeros.
void amx_pack_k(const float* k, int64_t stride, int64_t keys, int64_t D, uint16_t* out) {
  const int64_t Dp = amx_padded_depth(D);
  for (int64_t key = 0; key < padded_keys(keys); ++key)
    for (int64_t d = 0; d < Dp; d += 32)
      _mm512_storeu_si512(out + key * Dp + d, key < keys ? bf16_pairs(k + key * stride + d, D - d) : _mm512_setzero_si512());
}

// V^T per block of 32 keys (D rows of 32 keys, 4 KB-5 KB contiguous; zeros past the keys): the A
// operand of O^T. Per 32 keys and 16 columns: 16 key pairs, each as (column d: its two keys' bf16), transposed to rows d.
void amx_pack_v(const float* v, int64_t stride, int64_t keys, int64_t D, uint16_t* out) {
  const int64_t kp = padded_keys(keys);
  alignas(64) uint16_t pair_idx[32];                // [key 2j's 16 | key 2j + 1's 16] -> pairs per column
  for (int j = 0; j < 32; ++j) pair_idx[j] = static_cast<uint16_t>((j & 1) * 16 + (j >> 1));
  const __m512i pairs = _mm512_load_si512(pair_idx);
  __m512i r[16];
  for (int64_t k0 = 0; k0 < kp; k0 += kAmxKeys)
    for (int64_t d = 0; d < D; d += 16) {
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t key = k0 + 2 * j;
        const __m512 a = key < keys ? _mm512_loadu_ps(v + key * stride + d) : _mm512_setzero_ps();
        const __m512 b = key + 1 < keys ? _mm512_loadu_ps(v + (key + 1) * stride + d) : _mm512_setzero_ps();
        r[j] = _mm512_permutexvar_epi16(pairs, (__m512i)_mm512_cvtne2ps_pbh(b, a));
      }
      transpose16(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out + (k0 / kAmxKeys * D + d + i) * kAmxKeys, r[i]);
    }
}

void amx_attention(const AmxAttention& a) {
  switch (a.D / 16) {
    case 1: return attend<1>(a);
    case 2: return attend<2>(a);
    case 3: return attend<3>(a);
    case 4: return attend<4>(a);
    default: return attend<5>(a);
  }
}

}  // namespace pqv

#else

namespace pqv {

bool amx_ready() { return false; }
int64_t amx_padded_depth(int64_t) { return 0; }
int64_t amx_k_elems(int64_t, int64_t) { return 0; }
int64_t amx_v_elems(int64_t, int64_t) { return 0; }
int64_t amx_scratch_floats(int64_t, int64_t) { return 0; }
void amx_pack_q(const float*, int64_t, int64_t, int64_t, int64_t, uint16_t*) {}
void amx_pack_k(const float*, int64_t, int64_t, int64_t, uint16_t*) {}
void amx_pack_v(const float*, int64_t, int64_t, int64_t, uint16_t*) {}
void amx_attention(const AmxAttention&) {}

}  // namespace pqv

#endif
