// pqv_paged_attention: attention over the slot-major KV cache (paddle_qwenvl/ops/attention_metadata.py):
//  1. writes this step's k/v (T, Hkv, D) into their cache slots, in place;
//  2. every query token t attends causally to the first token_ctx[t] positions of its sequence,
//     read through the block table (given each token its sequence's whole length, this is
//     non-causal attention: the vision towers' block attention, ops/block_attention.py).
// Work items (make_plan):
//  - a decode token (its sequence has one query token): all kv heads at once (attend_decode); its
//    positions are read as kDecodeStreams interleaved sequential streams (the online softmax does
//    not care about order), and each phase prefetches what the next one reads (scores: this
//    chunk's V rows; accumulate: the next K rows), so K and V stream side by side; long contexts
//    are split over positions (flash-decoding) so every thread has several items, the partial
//    softmax states merged at the end;
//  - a prefill tile (attend_tile): up to kTileRows query rows (consecutive tokens of one sequence x
//    the G query heads of one kv head) against chunks of that head's K/V rows, causal.
//    Compute-bound: each K/V row loaded serves every row of the tile;
//  - the sequences listed in the attr gemm_sequences (the wrapper's choice, ops/paged_attention.py
//    gemm_sequences: long fresh prompts of a bf16 model): causal attention in bf16 on oneDNN GEMMs
//    (gemm_attention.cc), reading k/v as given. Each must be a fresh prompt (its first query token
//    is its position 0, so its whole context is this step's k/v); needs oneDNN and native bf16.
// Attrs: scale, block_size, gemm_sequences, then num_threads, work_per_thread, portable (common.h:
// pqv::Exec; the inner loops are paged_avx512.cc's unless `portable`, no AVX512 or D % 16 != 0).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "attention/attention_kernels.h"
#include "attention/gemm_attention.h"

namespace {

constexpr int64_t kChunk = 32;           // positions scored before one softmax rescale
constexpr int64_t kMinSplitLen = 256;    // shortest position range worth its own decode work item
// Decode splits aim at this many items per thread: more balance the threads when a core is
// shared, fewer cost less per item. bench_ops, 2 threads, one sequence of 4096: 1-2 per thread
// 50-54% of the DRAM probe, 4 49-62%, 8 46%.
constexpr int64_t kItemsPerThread = 2;
constexpr int64_t kTileRows = 64;        // query rows (tokens x G heads) of a prefill tile
// Sequential streams a decode item reads its positions in: position ranges of equal length,
// taken one row from each in turn. With a single stream the hardware prefetcher runs too few
// lines ahead to hide DRAM latency behind the scores and accumulate arithmetic; more streams put
// more misses in flight (as the GEMVs' rows_in_four_streams). See docs/kernels.md for figures.
constexpr int64_t kDecodeStreams = 16;

inline int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

struct Problem {
  const float* q; float* out;
  const void* kc; const void* vc;   // float, or bf16 bits (uint16_t) when kv_bf16
  const int32_t* tables; const int32_t* token_seq; const int32_t* token_ctx;
  int64_t max_blocks, block_size, T, Hq, Hkv, D, G;
  float scale;
  const char* gemm;     // per sequence: its tokens go to the GEMM path (gemm_sequences)
  bool kv_bf16;         // the caches hold bf16 (a bfloat16 model's): rows widened as they are read
  pqv::Exec ex;
};

// Whether the run of query tokens starting at t0 (one sequence) takes the GEMM path.
bool takes_gemm(const Problem& P, int64_t t0) { return P.gemm[P.token_seq[t0]] != 0; }

// Per sequence (block table row), whether gemm_sequences lists it; a listed sequence must be a
// fresh prompt, and the GEMM path must be there (oneDNN headers, a CPU with native bf16).
std::vector<char> gemm_flags(const std::vector<int64_t>& gemm_sequences, int64_t num_seqs, const int32_t* token_seq,
                             const int32_t* token_ctx, int64_t T, const pqv::Exec& ex) {
  std::vector<char> flags(num_seqs, 0);
  if (gemm_sequences.empty()) return flags;
  PD_CHECK(pqv::gemm_attention_built(), "gemm_sequences needs a build with oneDNN headers");
  PD_CHECK(ex.fast_bf16(), "gemm_sequences (bf16 attention) needs a CPU with AVX512-BF16 and portable=false");
  for (int64_t s : gemm_sequences) {
    PD_CHECK(s >= 0 && s < num_seqs, "gemm_sequences: sequence ", s, " is not a row of block_tables");
    flags[s] = 1;
  }
  for (int64_t t0 = 0, t1; t0 < T; t0 = t1) {
    for (t1 = t0 + 1; t1 < T && token_seq[t1] == token_seq[t0]; ++t1) {}
    PD_CHECK(!flags[token_seq[t0]] || (token_ctx[t0] == 1 && token_ctx[t1 - 1] == t1 - t0), "gemm_sequences: sequence ",
             token_seq[t0], " is not a fresh prompt (its context must be this step's tokens)");
  }
  return flags;
}

// Query tokens [t0, t0 + nt) (consecutive tokens of one sequence), kv heads [h0, h1), cache
// positions [p0, p1). part >= 0: one split of a decode token, its state kept for the merge.
struct Item {
  int64_t t0, nt, h0, h1, p0, p1, part;
  int64_t rows(const Problem& P) const { return nt * P.G; }
  int64_t cost() const { return nt * (h1 - h0) * (p1 - p0); }
};

// Online-softmax state of an item: per kv head hi and query row r (token tt, head g: r = tt*G + g)
// a running max m, sum l and acc (D). Index (hi * R + r); for a decode token that is its query head.
struct State {
  std::vector<float> m, l, acc;
  State(int64_t rows, int64_t D) : m(rows, -std::numeric_limits<float>::infinity()), l(rows, 0.f), acc(rows * D, 0.f) {}
};

// Float offsets (slot * Hkv * D) of the cache rows of positions [p0, p1) of a sequence, read
// through its block table, cut into chunks of kChunk positions (a chunk may span blocks; the
// kernels take row pointers). streams > 1: the range is cut into that many near-equal parts and
// the list takes one position from each part in turn (only for ranges every query row sees
// whole: a decode item's, never a causal tile's).
std::vector<int64_t> row_offsets(const Problem& P, int64_t seq, int64_t p0, int64_t p1, int64_t streams = 1) {
  const int32_t* table = P.tables + seq * P.max_blocks;
  const int64_t len = p1 - p0, S = std::max<int64_t>(1, std::min(streams, len)), row = P.Hkv * P.D;
  std::vector<int64_t> bounds(S + 1), offsets;
  for (int64_t s = 0; s <= S; ++s) bounds[s] = p0 + len * s / S;            // part s: [bounds[s], bounds[s+1])
  offsets.reserve(len);
  for (int64_t i = 0; i < (len + S - 1) / S; ++i)
    for (int64_t s = 0; s < S; ++s) {
      const int64_t pos = bounds[s] + i;
      if (pos < bounds[s + 1]) offsets.push_back((int64_t(table[pos / P.block_size]) * P.block_size + pos % P.block_size) * row);
    }
  return offsets;
}

// qs (heads, R, D): the item's query rows, scaled.
std::vector<float> gather_queries(const Problem& P, const Item& it) {
  const int64_t R = it.rows(P);
  std::vector<float> qs((it.h1 - it.h0) * R * P.D);
  for (int64_t h = it.h0; h < it.h1; ++h)
    for (int64_t tt = 0; tt < it.nt; ++tt)
      for (int64_t g = 0; g < P.G; ++g) {
        const float* src = P.q + ((it.t0 + tt) * P.Hq + h * P.G + g) * P.D;
        float* dst = qs.data() + (((h - it.h0) * R) + tt * P.G + g) * P.D;
        for (int64_t d = 0; d < P.D; ++d) dst[d] = src[d] * P.scale;
      }
  return qs;
}

// Folds one chunk's scores s (R, kChunk) of kv head hi, positions [pos, pos + n), into the state;
// row r sees positions < token_ctx of its token (causal), the rest of its chunk row is zeroed.
template <typename Kernels>
void softmax_rows(const Problem& P, const Kernels& K, const Item& it, int64_t pos, int64_t n, int64_t hi,
                  float* s, float* alpha, State& st) {
  const int64_t R = it.rows(P);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t valid = std::clamp<int64_t>(P.token_ctx[it.t0 + r / P.G] - pos, 0, n);
    float* sr = s + r * kChunk;
    alpha[r] = valid ? K.softmax_step(sr, valid, &st.m[hi * R + r], &st.l[hi * R + r]) : 1.f;
    std::fill(sr + valid, sr + n, 0.f);
  }
}

// Row pointers of kv head h at offsets[i0, i0 + n) into `cache`; positions past the item's end
// repeat its last row (for prefetch pointers).
template <typename T>
void chunk_rows(const std::vector<int64_t>& offsets, int64_t i0, int64_t n, const void* cache, int64_t h, int64_t D,
                const T** rows) {
  const int64_t last = static_cast<int64_t>(offsets.size()) - 1;
  const T* head = static_cast<const T*>(cache) + h * D;
  for (int64_t j = 0; j < n; ++j) rows[j] = head + offsets[std::min(i0 + j, last)];
}

template <typename T>
void attend_decode(const Problem& P, const pqv::AttnKernelsT<T>& K, const Item& it, State& st) {
  const int64_t R = it.rows(P), D = P.D, heads = it.h1 - it.h0, len = it.p1 - it.p0;
  const std::vector<float> qs = gather_queries(P, it);
  // every position of a decode item is below its token's context: order is free
  const std::vector<int64_t> offsets = row_offsets(P, P.token_seq[it.t0], it.p0, it.p1, kDecodeStreams);
  std::vector<float> s(R * kChunk), alpha(R);
  const T *krows[kChunk], *vrows[kChunk], *knext[kChunk];
  for (int64_t c0 = 0; c0 < len; c0 += kChunk) {
    const int64_t n = std::min(kChunk, len - c0);
    for (int64_t hi = 0; hi < heads; ++hi) {
      chunk_rows(offsets, c0, n, P.kc, it.h0 + hi, D, krows);
      chunk_rows(offsets, c0, n, P.vc, it.h0 + hi, D, vrows);
      // the K rows read next: the next head's in this chunk, else the first head's in the next
      const bool last = hi + 1 == heads;
      chunk_rows(offsets, last ? c0 + kChunk : c0, n, P.kc, last ? it.h0 : it.h0 + hi + 1, D, knext);
      K.scores(qs.data() + hi * R * D, R, krows, n, D, s.data(), kChunk, vrows);
      softmax_rows(P, K, it, it.p0 + c0, n, hi, s.data(), alpha.data(), st);
      K.accumulate(st.acc.data() + hi * R * D, alpha.data(), s.data(), kChunk, 1, R, vrows, n, D, knext);
    }
  }
}

// A prefill tile: its R query rows (tokens x G heads of kv head h0) against chunks of that head's
// K/V rows, scores transposed (st (n, Rp), see attention_kernels.h); causal per column.
template <typename T>
void attend_tile(const Problem& P, const pqv::AttnKernelsT<T>& K, const Item& it, State& st) {
  const int64_t R = it.rows(P), Rp = round16(R), D = P.D, len = it.p1 - it.p0;
  std::vector<float> qt(D * Rp, 0.f), sT(kChunk * Rp), alpha(Rp);
  for (int64_t r = 0; r < R; ++r) {                              // qt (D, Rp): scaled and transposed
    const float* src = P.q + ((it.t0 + r / P.G) * P.Hq + it.h0 * P.G + r % P.G) * D;
    for (int64_t d = 0; d < D; ++d) qt[d * Rp + r] = src[d] * P.scale;
  }
  const std::vector<int64_t> offsets = row_offsets(P, P.token_seq[it.t0], it.p0, it.p1);
  std::vector<int32_t> valid(Rp, 0);                            // padding columns see nothing
  const T *krows[kChunk], *vrows[kChunk];
  for (int64_t c0 = 0; c0 < len; c0 += kChunk) {
    const int64_t n = std::min(kChunk, len - c0);
    for (int64_t r = 0; r < R; ++r) valid[r] = std::clamp<int64_t>(P.token_ctx[it.t0 + r / P.G] - it.p0 - c0, 0, n);
    chunk_rows(offsets, c0, n, P.kc, it.h0, D, krows);
    chunk_rows(offsets, c0, n, P.vc, it.h0, D, vrows);
    K.scores_t(qt.data(), Rp, krows, n, D, sT.data());
    K.softmax_t(sT.data(), n, Rp, valid.data(), st.m.data(), st.l.data(), alpha.data());
    K.accumulate(st.acc.data(), alpha.data(), sT.data(), 1, Rp, R, vrows, n, D, nullptr);
  }
}

// out[t, h*G + g] = acc / l for a finished (unsplit) item.
void write_item(const Problem& P, const Item& it, const State& st) {
  const int64_t R = it.rows(P);
  for (int64_t h = it.h0; h < it.h1; ++h)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = (h - it.h0) * R + r;
      float* o = P.out + ((it.t0 + r / P.G) * P.Hq + h * P.G + r % P.G) * P.D;
      const float inv = 1.f / st.l[i];
      for (int64_t d = 0; d < P.D; ++d) o[d] = st.acc[i * P.D + d] * inv;
    }
}

// Merges the split states parts[0..n) of decode token t for query head qh into out[t, qh].
void write_merged(const Problem& P, int64_t t, int64_t qh, const State* parts, int64_t n) {
  float m = -std::numeric_limits<float>::infinity(), l = 0.f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, parts[i].m[qh]);
  float* o = P.out + (t * P.Hq + qh) * P.D;
  std::fill(o, o + P.D, 0.f);
  for (int64_t i = 0; i < n; ++i) {
    if (parts[i].l[qh] == 0.f) continue;                       // empty split
    const float w = std::exp(parts[i].m[qh] - m);
    l += w * parts[i].l[qh];
    for (int64_t d = 0; d < P.D; ++d) o[d] += w * parts[i].acc[qh * P.D + d];
  }
  for (int64_t d = 0; d < P.D; ++d) o[d] /= l;
}

// bf16 caches take k/v rounded to nearest even.
void write_kv(const paddle::Tensor& k, const paddle::Tensor& v, const paddle::Tensor& slots, void* kc, void* vc,
              bool bf16, int64_t num_slots, int nt, const pqv::Exec& ex) {
  const int64_t T = k.shape()[0], row = k.numel() / std::max<int64_t>(T, 1);
  const int64_t* slot = slots.data<int64_t>();
  for (int64_t t = 0; t < T; ++t)
    PD_CHECK(slot[t] >= -1 && slot[t] < num_slots, "slot_mapping value out of range of the cache");
  // a decode step writes a few KB: only a prefill's worth is split over threads
#pragma omp parallel for num_threads(ex.threads_for(2 * T * row * 4, nt))
  for (int64_t t = 0; t < T; ++t) {
    if (slot[t] < 0) continue;                                 // -1: padding token, nothing to store
    const float *ks = k.data<float>() + t * row, *vs = v.data<float>() + t * row;
    if (bf16) {
      uint16_t* kd = static_cast<uint16_t*>(kc) + slot[t] * row;
      uint16_t* vd = static_cast<uint16_t*>(vc) + slot[t] * row;
      for (int64_t i = 0; i < row; ++i) kd[i] = pqv::f32_to_bf16(ks[i]), vd[i] = pqv::f32_to_bf16(vs[i]);
    } else {
      std::copy_n(ks, row, static_cast<float*>(kc) + slot[t] * row);
      std::copy_n(vs, row, static_cast<float*>(vc) + slot[t] * row);
    }
  }
}

// A decode token's split length: long enough to be worth an item (kMinSplitLen), short enough
// that the step has about kItemsPerThread items per thread (a prefill in the batch raises it).
int64_t total_positions(const Problem& P) {
  int64_t total = 0;
  for (int64_t t = 0; t < P.T; ++t) total += P.token_ctx[t];
  return total;
}

int64_t split_length(const Problem& P, int nt) {
  return std::max<int64_t>(kMinSplitLen, total_positions(P) / (kItemsPerThread * nt));
}

struct Plan {
  std::vector<Item> items;                  // largest first (dynamic scheduling balances the tail)
  std::vector<std::array<int64_t, 3>> merges;   // (token, first part, parts) of split decode tokens
  int64_t parts = 0;
};

Plan make_plan(const Problem& P, int nt) {
  Plan plan;
  const int64_t split = split_length(P, nt), tile = std::max<int64_t>(1, kTileRows / P.G);
  for (int64_t t0 = 0, t1; t0 < P.T; t0 = t1) {
    for (t1 = t0 + 1; t1 < P.T && P.token_seq[t1] == P.token_seq[t0]; ++t1) {}
    if (takes_gemm(P, t0)) continue;                           // run_gemm_prompts
    if (t1 - t0 == 1) {                                        // decode token: all heads, maybe split
      const int64_t n = P.token_ctx[t0], S = std::max<int64_t>(1, n / split);
      if (S > 1) plan.merges.push_back({t0, plan.parts, S});
      for (int64_t sp = 0; sp < S; ++sp)
        plan.items.push_back({t0, 1, 0, P.Hkv, n * sp / S, n * (sp + 1) / S, S > 1 ? plan.parts++ : -1});
      continue;
    }
    for (int64_t a = t0; a < t1; a += tile)                    // prefill: tiles x kv heads
      for (int64_t h = 0; h < P.Hkv; ++h) {
        const int64_t n = std::min(tile, t1 - a);
        plan.items.push_back({a, n, h, h + 1, 0, P.token_ctx[a + n - 1], -1});
      }
  }
  std::stable_sort(plan.items.begin(), plan.items.end(), [](const Item& a, const Item& b) { return a.cost() > b.cost(); });
  return plan;
}

template <typename T>
void run_attention(const Problem& P, int nt, const pqv::AttnKernelsT<T>& K) {
  const Plan plan = make_plan(P, nt);
  std::vector<State> parts(plan.parts, State(P.Hq, P.D));
  pqv::parallel_dynamic(plan.items.size(), nt, [&](int64_t i) {
    const Item& it = plan.items[i];
    if (it.part >= 0) return attend_decode(P, K, it, parts[it.part]);
    State st(round16(it.rows(P)) * (it.h1 - it.h0), P.D);      // rows rounded up for attend_tile
    if (it.nt == 1) attend_decode(P, K, it, st); else attend_tile(P, K, it, st);   // a 1-token tile too
    write_item(P, it, st);
  });
  const int64_t merges = plan.merges.size();
#pragma omp parallel for num_threads(P.ex.threads_for(plan.parts * P.Hq * P.D * 4, nt))
  for (int64_t i = 0; i < merges * P.Hq; ++i) {
    const auto& mg = plan.merges[i / P.Hq];
    write_merged(P, mg[0], i % P.Hq, &parts[mg[1]], mg[2]);
  }
}

void run_attention(const Problem& P, int nt) {
  const bool avx512 = P.ex.avx512() && P.D % 16 == 0;
  if (P.kv_bf16) return run_attention(P, nt, avx512 ? pqv::kAttnAvx512Bf16 : pqv::kAttnPortableBf16);
  run_attention(P, nt, avx512 ? pqv::kAttnAvx512 : pqv::kAttnPortable);
}

// The fresh prompts that takes_gemm picks, each attending causally to its own k/v rows.
void run_gemm_prompts(const Problem& P, const float* k, const float* v) {
  std::vector<pqv::Span> spans;
  for (int64_t t0 = 0, t1; t0 < P.T; t0 = t1) {
    for (t1 = t0 + 1; t1 < P.T && P.token_seq[t1] == P.token_seq[t0]; ++t1) {}
    if (takes_gemm(P, t0)) spans.push_back({t0, t1 - t0});
  }
  if (spans.empty()) return;
  const pqv::GemmAttention a{P.q, k, v, P.out, P.T, P.Hq, P.Hkv, P.D, P.scale, /*causal=*/true, /*bf16=*/true,
                             /*amx=*/false};
  pqv::gemm_attention(a, spans, P.ex);
}

void check_inputs(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                  const paddle::Tensor& k_cache, const paddle::Tensor& v_cache, const paddle::Tensor& block_tables,
                  const paddle::Tensor& token_ctx, int64_t block_size) {
  for (const paddle::Tensor* x : {&q, &k, &v})
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32, "q, k and v must be float32");
  PD_CHECK((k_cache.dtype() == paddle::DataType::FLOAT32 || k_cache.dtype() == paddle::DataType::BFLOAT16) &&
               v_cache.dtype() == k_cache.dtype(),
           "the caches must be both float32 or both bfloat16");
  PD_CHECK(block_tables.dtype() == paddle::DataType::INT32 && token_ctx.dtype() == paddle::DataType::INT32,
           "block_tables, token_seq and token_ctx must be int32");
  PD_CHECK(k_cache.shape()[0] % block_size == 0 && v_cache.shape() == k_cache.shape(),
           "the caches must have the same shape, slots a multiple of block_size");
  PD_CHECK(q.shape()[1] % k.shape()[1] == 0 && q.shape()[1] / k.shape()[1] <= 64, "Hq / Hkv must be an integer <= 64");
}

}  // namespace

std::vector<paddle::Tensor> PagedAttention(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                                           paddle::Tensor& k_cache, paddle::Tensor& v_cache,
                                           const paddle::Tensor& slot_mapping, const paddle::Tensor& block_tables,
                                           const paddle::Tensor& token_seq, const paddle::Tensor& token_ctx,
                                           float scale, int64_t block_size, const std::vector<int64_t>& gemm_sequences,
                                           int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_inputs(q, k, v, k_cache, v_cache, block_tables, token_ctx, block_size);
  auto out = paddle::empty(q.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  const int64_t Hq = q.shape()[1], Hkv = k.shape()[1];
  const bool kv_bf16 = k_cache.dtype() == paddle::DataType::BFLOAT16;
  const int64_t T = q.shape()[0];
  const std::vector<char> gemm = gemm_flags(gemm_sequences, block_tables.shape()[0], token_seq.data<int32_t>(),
                                            token_ctx.data<int32_t>(), T, ex);
  Problem P{q.data<float>(), out.data<float>(), k_cache.data(), v_cache.data(),
            block_tables.data<int32_t>(), token_seq.data<int32_t>(), token_ctx.data<int32_t>(),
            block_tables.shape()[1], block_size, T, Hq, Hkv, q.shape()[2], Hq / Hkv, scale, gemm.data(), kv_bf16, ex};
  // work: multiply-adds of scores + accumulate, or K/V bytes read, whichever is larger
  const int nt = ex.threads_for(total_positions(P) * P.D * std::max<int64_t>(2 * Hq, 8 * Hkv));
  write_kv(k, v, slot_mapping, k_cache.data(), v_cache.data(), kv_bf16, k_cache.shape()[0], nt, ex);
  run_gemm_prompts(P, k.data<float>(), v.data<float>());
  run_attention(P, nt);
  return {out};
}

std::vector<std::vector<int64_t>> PagedAttentionShape(
    const std::vector<int64_t>& q, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>& kc, const std::vector<int64_t>& vc, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {q, kc, vc};
}

std::vector<paddle::DataType> PagedAttentionDtype(const paddle::DataType& q, const paddle::DataType&,
                                                  const paddle::DataType&, const paddle::DataType& kc,
                                                  const paddle::DataType& vc, const paddle::DataType&,
                                                  const paddle::DataType&, const paddle::DataType&,
                                                  const paddle::DataType&) {
  return {q, kc, vc};
}

PD_BUILD_OP(pqv_paged_attention)
    .Inputs({"q", "k", "v", "k_cache", "v_cache", "slot_mapping", "block_tables", "token_seq", "token_ctx"})
    .Outputs({"out", "k_cache_out", "v_cache_out"})
    .SetInplaceMap({{"k_cache", "k_cache_out"}, {"v_cache", "v_cache_out"}})
    .Attrs({"scale: float", "block_size: int64_t", "gemm_sequences: std::vector<int64_t>", "num_threads: int64_t",
            "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(PagedAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(PagedAttentionShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(PagedAttentionDtype));
