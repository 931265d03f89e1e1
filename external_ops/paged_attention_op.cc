// Paged attention over the slot-major KV cache (see paddle_qwenvl/layers/attention_metadata.py):
//  1. writes this step's k/v (T, Hkv, D) into their cache slots, in place;
//  2. every query token t attends causally to the first token_ctx[t] positions of its sequence,
//     read through the block table. Prefill, decode and mixed batches are the same loop.
// Work items are (token, kv head, split of the positions); the G = Hq / Hkv query heads of a kv
// head share each K/V row read. Splits (flash-decoding) keep all threads busy when a decode
// batch has fewer (token, kv head) pairs than threads; their partial softmax states are merged.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common.h"
#include "kernels.h"

namespace {

constexpr int64_t kChunk = 32;            // positions scored before one softmax rescale
constexpr int64_t kMinSplitLen = 256;     // shortest position range worth its own work item
constexpr int64_t kPrefetchRows = 16;     // K rows requested ahead of the one being scored

// Cache rows are scattered (block table) and strided (other kv heads in between), so the
// hardware prefetcher does not follow them: without this the loop waited on DRAM for every row.
inline void prefetch_row(const float* p, int64_t D) {
  for (int64_t i = 0; i < D; i += 16) __builtin_prefetch(p + i);
}

struct Problem {
  const float* q; float* out; const float* kc; const float* vc;
  const int32_t* tables; const int32_t* token_seq; const int32_t* token_ctx;
  int64_t max_blocks, block_size, T, Hq, Hkv, D, G;
  float scale;
};

// Walks the cache rows (offsets into kc/vc) of token t's sequence for kv head h, one position at
// a time from `pos` up to `end`; reads the block table once per block.
struct RowCursor {
  const Problem& P;
  const int32_t* table;
  int64_t h, pos, end, off, base = 0;
  RowCursor(const Problem& P, int64_t t, int64_t h, int64_t pos, int64_t end)
      : P(P), table(P.tables + P.token_seq[t] * P.max_blocks), h(h), pos(pos), end(end), off(pos % P.block_size) {
    if (pos < end) base = int64_t(table[pos / P.block_size]) * P.block_size;
  }
  bool valid() const { return pos < end; }
  int64_t row() const { return ((base + off) * P.Hkv + h) * P.D; }
  void next() {
    ++pos;
    if (++off == P.block_size) {
      off = 0;
      if (pos < end) base = int64_t(table[pos / P.block_size]) * P.block_size;
    }
  }
};

// Online-softmax state of G query heads over one position range: max m, sum l, acc (G, D).
struct State {
  std::vector<float> m, l, acc;
  explicit State(int64_t G, int64_t D) : m(G, -std::numeric_limits<float>::infinity()), l(G, 0.f), acc(G * D, 0.f) {}
};

// Scores the next n positions of `cur` into s (G, kChunk), then folds them into the state.
// `ahead` runs kPrefetchRows positions in front of `cur` and prefetches their K rows.
void attend_chunk(const Problem& P, const pqv::AttnKernels& K, const float* qs, RowCursor& cur, RowCursor& ahead,
                  int64_t n, float* s, State& st) {
  const int64_t G = P.G, D = P.D;
  const float* krows[kChunk];
  const float* vrows[kChunk];
  for (int64_t j = 0; j < n; ++j, cur.next()) {
    if (ahead.valid()) {
      prefetch_row(P.kc + ahead.row(), D);
      ahead.next();
    }
    krows[j] = P.kc + cur.row();
    vrows[j] = P.vc + cur.row();
    prefetch_row(vrows[j], D);                                 // used after the chunk's softmax
  }
  for (int64_t j0 = 0; j0 < n; j0 += 16) K.scores(qs, G, krows + j0, std::min<int64_t>(16, n - j0), D, s + j0, kChunk);
  float alpha[64];
  for (int64_t g = 0; g < G; ++g) alpha[g] = K.softmax_step(s + g * kChunk, n, &st.m[g], &st.l[g]);
  K.accumulate(st.acc.data(), alpha, s, kChunk, n, G, vrows, D);
}

void attend_range(const Problem& P, const pqv::AttnKernels& K, int64_t t, int64_t h, int64_t p0, int64_t p1,
                  State& st) {
  std::vector<float> qs(P.G * P.D), s(kChunk * P.G);
  const float* q = P.q + (t * P.Hq + h * P.G) * P.D;      // (G, D) contiguous
  for (int64_t i = 0; i < P.G * P.D; ++i) qs[i] = q[i] * P.scale;
  RowCursor cur(P, t, h, p0, p1), ahead(P, t, h, std::min(p0 + kPrefetchRows, p1), p1);
  for (int64_t c0 = p0; c0 < p1; c0 += kChunk) attend_chunk(P, K, qs.data(), cur, ahead, std::min(kChunk, p1 - c0), s.data(), st);
}

// Merges the split states parts[0..n) into out[t, h*G:(h+1)*G, :].
void write_merged(const Problem& P, int64_t t, int64_t h, const State* parts, int64_t n) {
  for (int64_t g = 0; g < P.G; ++g) {
    float m = -std::numeric_limits<float>::infinity(), l = 0.f;
    for (int64_t i = 0; i < n; ++i) m = std::max(m, parts[i].m[g]);
    float* o = P.out + (t * P.Hq + h * P.G + g) * P.D;
    std::fill(o, o + P.D, 0.f);
    for (int64_t i = 0; i < n; ++i) {
      if (parts[i].l[g] == 0.f) continue;                      // empty split
      const float w = std::exp(parts[i].m[g] - m);
      l += w * parts[i].l[g];
      for (int64_t d = 0; d < P.D; ++d) o[d] += w * parts[i].acc[g * P.D + d];
    }
    for (int64_t d = 0; d < P.D; ++d) o[d] /= l;
  }
}

void write_kv(const paddle::Tensor& k, const paddle::Tensor& v, const paddle::Tensor& slots, float* kc, float* vc,
              int64_t num_slots, int nt) {
  const int64_t T = k.shape()[0], row = k.numel() / std::max<int64_t>(T, 1);
  const int64_t* slot = slots.data<int64_t>();
  for (int64_t t = 0; t < T; ++t)
    PD_CHECK(slot[t] >= -1 && slot[t] < num_slots, "slot_mapping value out of range of the cache");
#pragma omp parallel for num_threads(nt)
  for (int64_t t = 0; t < T; ++t) {
    if (slot[t] < 0) continue;                                 // -1: padding token, nothing to store
    std::copy_n(k.data<float>() + t * row, row, kc + slot[t] * row);
    std::copy_n(v.data<float>() + t * row, row, vc + slot[t] * row);
  }
}

// Splits of each (token, kv head) item: 1 unless there are fewer items than threads and the
// contexts are long enough to share.
int64_t choose_splits(const Problem& P, int nt) {
  const int64_t items = P.T * P.Hkv;
  if (items >= nt) return 1;
  int64_t longest = 0;
  for (int64_t t = 0; t < P.T; ++t) longest = std::max<int64_t>(longest, P.token_ctx[t]);
  return std::max<int64_t>(1, std::min((2 * nt + items - 1) / items, longest / kMinSplitLen));
}


void run_attention(const Problem& P, int nt) {
  const pqv::AttnKernels& K = pqv::has_avx512() && P.D % 16 == 0 ? pqv::kAttnAvx512 : pqv::kAttnPortable;
  const int64_t S = choose_splits(P, nt), items = P.T * P.Hkv;
  std::vector<State> parts(items * S, State(P.G, P.D));
  pqv::parallel_dynamic(items * S, nt, [&](int64_t it) {
    const int64_t t = it / S / P.Hkv, h = it / S % P.Hkv, sp = it % S, n = P.token_ctx[t];
    attend_range(P, K, t, h, n * sp / S, n * (sp + 1) / S, parts[it]);
  });
#pragma omp parallel for num_threads(nt)
  for (int64_t item = 0; item < items; ++item) write_merged(P, item / P.Hkv, item % P.Hkv, &parts[item * S], S);
}

void check_inputs(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& k_cache,
                  const paddle::Tensor& block_tables, const paddle::Tensor& token_ctx, int64_t block_size) {
  for (const paddle::Tensor* x : {&q, &k, &k_cache})
    PD_CHECK(x->dtype() == paddle::DataType::FLOAT32, "q, k, v and the caches must be float32");
  PD_CHECK(block_tables.dtype() == paddle::DataType::INT32 && token_ctx.dtype() == paddle::DataType::INT32,
           "block_tables, token_seq and token_ctx must be int32");
  PD_CHECK(k_cache.shape()[0] % block_size == 0, "cache slots must be a multiple of block_size");
  PD_CHECK(q.shape()[1] % k.shape()[1] == 0 && q.shape()[1] / k.shape()[1] <= 64, "Hq / Hkv must be an integer <= 64");
}

}  // namespace

std::vector<paddle::Tensor> PagedAttention(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                                           paddle::Tensor& k_cache, paddle::Tensor& v_cache,
                                           const paddle::Tensor& slot_mapping, const paddle::Tensor& block_tables,
                                           const paddle::Tensor& token_seq, const paddle::Tensor& token_ctx,
                                           float scale, int64_t block_size, int64_t num_threads) {
  check_inputs(q, k, k_cache, block_tables, token_ctx, block_size);
  const int nt = pqv::threads(num_threads);
  write_kv(k, v, slot_mapping, k_cache.data<float>(), v_cache.data<float>(), k_cache.shape()[0], nt);
  auto out = paddle::empty(q.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  const int64_t Hq = q.shape()[1], Hkv = k.shape()[1];
  Problem P{q.data<float>(), out.data<float>(), k_cache.data<float>(), v_cache.data<float>(),
            block_tables.data<int32_t>(), token_seq.data<int32_t>(), token_ctx.data<int32_t>(),
            block_tables.shape()[1], block_size, q.shape()[0], Hq, Hkv, q.shape()[2], Hq / Hkv, scale};
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
    .Attrs({"scale: float", "block_size: int64_t", "num_threads: int64_t"})
    .SetKernelFn(PD_KERNEL(PagedAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(PagedAttentionShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(PagedAttentionDtype));
