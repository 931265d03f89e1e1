// Non-causal attention within blocks of tokens (the vision towers: one block per frame, or per
// window) on oneDNN GEMMs. An item = (block, head, chunk of query rows); per key block j:
//   S = q k_j^T (fp32), e = exp(scale * (S - running row max m)), O = O * alpha + e v_j,
// alpha = exp(scale * (old m - new m)); at the end out = O / l, l the running sum of e.
// K and V blocks are reordered once into the layout oneDNN's GEMM wants for its weights, so the
// query chunks do not repack them. bf16: q, e and the packed K / V are bf16 (AMX or
// AVX512-BF16), products summed in fp32; otherwise fp32 throughout. Each thread runs whole items
// on single-threaded primitives (inside our parallel region oneDNN runs inline).
// Long blocks only: the wrapper (ops/block_attention.py) sends short windows to the paged kernel.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "common.h"
#include "kernels.h"

#ifdef PQV_WITH_DNNL
#include "oneapi/dnnl/dnnl.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;

// An item's query rows (up to kQueryRows, a block's chunks of equal size) meet its keys in key
// blocks of up to kKeyBlock rows, with an online softmax across the key blocks, so the scores of
// one GEMM (rows x key block, fp32), its numerators and the packed K / V block stay in the L2.
constexpr int64_t kQueryRows = 256;
constexpr int64_t kKeyBlock = 512;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

// The two GEMMs of one (query rows, key block length) shape, created for one thread; the reorders
// that pack a head's K and V block into the layouts they want for their weights; the scratchpads.
struct Gemms {
  int64_t rows, keys;
  dnnl::matmul qk, pv;
  dnnl::reorder pack_k, pack_v;
  memory::desc q, k, s, e, v, o, k_src, v_src;                // the GEMMs' operands; the packing sources
  memory::desc qk_pad, pv_pad, k_pad, v_pad;
  size_t k_bytes, v_bytes, scratch;
};

std::shared_ptr<Gemms> make_gemms(int64_t rows, int64_t keys, int64_t H, int64_t D, bool bf16) {
  const auto dt = bf16 ? memory::data_type::bf16 : memory::data_type::f32, f32 = memory::data_type::f32;
  auto g = std::make_shared<Gemms>();
  g->rows = rows, g->keys = keys;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  pqv::OmpThreads one(1);                    // brgemm fixes its work split when it is created
  // S (rows, keys) = q rows of one head (stride H * D) x K^T, K (keys, D) as weights (D, keys)
  g->q = memory::desc({rows, D}, dt, tag::ab);                // q head-major: (H, N, D)
  g->s = memory::desc({rows, keys}, f32, tag::ab);
  dnnl::matmul::primitive_desc qk(engine(), g->q, memory::desc({D, keys}, dt, tag::any), g->s, attr);
  // O (rows, D) = e (rows, keys) x V (keys, D)
  g->e = memory::desc({rows, keys}, dt, tag::ab);
  g->o = memory::desc({rows, D}, f32, tag::ab);
  dnnl::matmul::primitive_desc pv(engine(), g->e, memory::desc({keys, D}, dt, tag::any), g->o, attr);
  // the fp32 inputs: K as (D, keys) and V as (keys, D), rows H * D apart
  g->k_src = memory::desc({D, keys}, f32, memory::dims{1, H * D});
  g->v_src = memory::desc({keys, D}, f32, memory::dims{H * D, 1});
  dnnl::reorder::primitive_desc pk(engine(), g->k_src, engine(), qk.weights_desc(), attr);
  dnnl::reorder::primitive_desc pvr(engine(), g->v_src, engine(), pv.weights_desc(), attr);
  g->k = qk.weights_desc(), g->v = pv.weights_desc();
  g->qk_pad = qk.scratchpad_desc(), g->pv_pad = pv.scratchpad_desc();
  g->k_pad = pk.scratchpad_desc(), g->v_pad = pvr.scratchpad_desc();
  g->qk = dnnl::matmul(qk), g->pv = dnnl::matmul(pv);
  g->pack_k = dnnl::reorder(pk), g->pack_v = dnnl::reorder(pvr);
  g->k_bytes = g->k.get_size(), g->v_bytes = g->v.get_size();
  g->scratch = std::max({g->qk_pad.get_size(), g->pv_pad.get_size(), g->k_pad.get_size(), g->v_pad.get_size()});
  return g;
}

// A block of n tokens: query chunks of `rows` (the last one ends at n, overlapping the one before),
// key blocks of `keys` rows but the last, `tail` ones; per head its packed K, V blocks in turn.
struct Plan {
  int64_t rows, keys, key_blocks;
  std::shared_ptr<Gemms> full, tail;
  int64_t head_bytes;
  const Gemms& gemms(int64_t j) const { return j + 1 < key_blocks ? *full : *tail; }
  int64_t offset(int64_t j) const { return j * int64_t(full->k_bytes + full->v_bytes); }
};

// Creating primitives costs ~1 ms each; frames of one video share a length. Bounded caches.
template <typename K, typename V, typename Make>
std::shared_ptr<V> cached(std::map<K, std::shared_ptr<V>>& cache, const K& key, Make make) {
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 256) cache.clear();
  return cache[key] = make();
}

std::shared_ptr<Plan> cached_plan(int64_t n, int64_t H, int64_t D, bool bf16) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, bool>, std::shared_ptr<Gemms>> gemms;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool>, std::shared_ptr<Plan>> plans;
  std::lock_guard<std::mutex> lock(mu);
  return cached(plans, std::make_tuple(n, H, D, bf16), [&] {
    auto p = std::make_shared<Plan>();
    p->rows = std::min(n, round16((n + (n + kQueryRows - 1) / kQueryRows - 1) / ((n + kQueryRows - 1) / kQueryRows)));
    p->key_blocks = (n + kKeyBlock - 1) / kKeyBlock;
    p->keys = std::min(n, round16((n + p->key_blocks - 1) / p->key_blocks));
    p->key_blocks = (n + p->keys - 1) / p->keys;
    const int64_t tail = n - (p->key_blocks - 1) * p->keys;
    auto get = [&](int64_t keys) {
      return cached(gemms, std::make_tuple(p->rows, keys, H, D, bf16), [&] { return make_gemms(p->rows, keys, H, D, bf16); });
    };
    p->full = get(p->keys);
    p->tail = tail == p->keys ? p->full : get(tail);
    p->head_bytes = p->offset(p->key_blocks - 1) + int64_t(p->tail->k_bytes + p->tail->v_bytes);
    return p;
  });
}

memory mem(const memory::desc& md, const void* p) { return memory(md, engine(), const_cast<void*>(p)); }

struct Block {
  int64_t start, n;
  std::shared_ptr<Plan> plan;
  int64_t packed;         // offset of its heads' packed K / V in the packed buffer
};

}  // namespace

std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor& q, const paddle::Tensor& k, const paddle::Tensor& v,
                                           const paddle::Tensor& cu_seqlens, float scale, bool bf16,
                                           int64_t num_threads) {
  PD_CHECK(q.dtype() == paddle::DataType::FLOAT32 && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
           "pqv_block_attention takes float32 q, k, v");
  PD_CHECK(q.shape().size() == 3 && k.shape() == q.shape() && v.shape() == q.shape(), "q, k, v must be (N, H, D)");
  PD_CHECK(cu_seqlens.dtype() == paddle::DataType::INT64, "cu_seqlens must be int64");
  PD_CHECK(!bf16 || pqv::has_fast_bf16(), "bf16 block attention needs a CPU with AVX512-BF16");
  const int64_t N = q.shape()[0], H = q.shape()[1], D = q.shape()[2];
  const int64_t* cu = cu_seqlens.data<int64_t>();
  const int64_t nb = cu_seqlens.numel() - 1;
  PD_CHECK(nb >= 0 && cu[0] == 0 && cu[nb] == N, "cu_seqlens must rise from 0 to N");

  std::vector<Block> blocks;
  int64_t packed_bytes = 0, macs = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t n = cu[b + 1] - cu[b];
    PD_CHECK(n >= 0, "cu_seqlens must not decrease");
    if (n == 0) continue;
    auto plan = cached_plan(n, H, D, bf16);
    blocks.push_back({cu[b], n, plan, packed_bytes});
    packed_bytes += H * plan->head_bytes;
    macs += 2 * n * n * H * D;
  }
  auto out = paddle::empty({N, H, D}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  if (blocks.empty()) return {out};
  const int nt = pqv::threads_for(num_threads, macs);
  size_t scratch = 0;
  int64_t max_rows = 0, max_scores = 0;
  for (const Block& b : blocks) {
    scratch = std::max({scratch, b.plan->full->scratch, b.plan->tail->scratch});
    max_rows = std::max(max_rows, b.plan->rows);
    max_scores = std::max(max_scores, b.plan->rows * b.plan->keys);
  }

  // q head-major (H, N, D) in the GEMMs' dtype: contiguous rows for the S GEMM
  std::vector<char> qh(N * H * D * (bf16 ? 2 : 4));
  {
    const float* q32 = q.data<float>();
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N * H; ++i) {
      const int64_t t = i / H, h = i % H;
      const float* src = q32 + i * D;
      if (bf16) {
        uint16_t* dst = reinterpret_cast<uint16_t*>(qh.data()) + (h * N + t) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = pqv::f32_to_bf16(src[d]);
      } else {
        std::copy_n(src, D, reinterpret_cast<float*>(qh.data()) + (h * N + t) * D);
      }
    }
  }
  const void* qa = qh.data();
  const int64_t esize = bf16 ? 2 : 4;
  std::unique_ptr<char[]> packed(new char[packed_bytes]);   // not zeroed; 2 MB pages: few faults
  pqv::advise_huge_pages(packed.get(), packed_bytes);
  std::vector<std::tuple<int64_t, int64_t, int64_t>> packs, items;  // (block, head, key block / first query row)
  for (int64_t i = 0; i < int64_t(blocks.size()); ++i)
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t j = 0; j < blocks[i].plan->key_blocks; ++j) packs.emplace_back(i, h, j);
      for (int64_t r = 0; r < blocks[i].n; r += blocks[i].plan->rows) items.emplace_back(i, h, r);
    }
  const pqv::RowKernels& rk = pqv::has_avx512() ? pqv::kRowAvx512 : pqv::kRowPortable;
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = out.data<float>();

#pragma omp parallel num_threads(nt)
  {
    std::vector<char> pad(scratch);
    dnnl::stream s(engine());
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    // 1. pack every K and V block of every (block, head), split over the threads
    for (int64_t i = t; i < int64_t(packs.size()); i += T) {
      const auto [bi, h, j] = packs[i];
      const Block& b = blocks[bi];
      const Gemms& G = b.plan->gemms(j);
      char* at = packed.get() + b.packed + h * b.plan->head_bytes + b.plan->offset(j);
      const int64_t src = ((b.start + j * b.plan->keys) * H + h) * D;
      G.pack_k.execute(s, {{DNNL_ARG_FROM, mem(G.k_src, kp + src)}, {DNNL_ARG_TO, mem(G.k, at)},
                           {DNNL_ARG_SCRATCHPAD, mem(G.k_pad, pad.data())}});
      G.pack_v.execute(s, {{DNNL_ARG_FROM, mem(G.v_src, vp + src)}, {DNNL_ARG_TO, mem(G.v, at + G.k_bytes)},
                           {DNNL_ARG_SCRATCHPAD, mem(G.v_pad, pad.data())}});
    }
#pragma omp barrier
    // 2. items: per key block S, online softmax, O = O * alpha + e v; then O / l
    std::vector<float> S(max_scores), O(max_rows * D), Oj(max_rows * D), m(max_rows), l(max_rows), alpha(max_rows);
    std::vector<char> E(max_scores * esize);
    for (int64_t i = t; i < int64_t(items.size()); i += T) {
      const auto [bi, h, first] = items[i];
      const Block& b = blocks[bi];
      const Plan& P = *b.plan;
      const int64_t r0 = std::min(first, b.n - P.rows);     // the last chunk ends at n (overlapping)
      const char* qr = static_cast<const char*>(qa) + (h * N + b.start + r0) * D * esize;
      const char* kv = packed.get() + b.packed + h * P.head_bytes;
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.f);
      for (int64_t j = 0; j < P.key_blocks; ++j) {
        const Gemms& G = P.gemms(j);
        const char* kj = kv + P.offset(j);
        G.qk.execute(s, {{DNNL_ARG_SRC, mem(G.q, qr)}, {DNNL_ARG_WEIGHTS, mem(G.k, kj)},
                         {DNNL_ARG_DST, mem(G.s, S.data())}, {DNNL_ARG_SCRATCHPAD, mem(G.qk_pad, pad.data())}});
        for (int64_t r = 0; r < P.rows; ++r) {
          float* e32 = bf16 ? nullptr : reinterpret_cast<float*>(E.data()) + r * G.keys;
          uint16_t* e16 = bf16 ? reinterpret_cast<uint16_t*>(E.data()) + r * G.keys : nullptr;
          const float old = m[r];
          const float sum = rk.softmax_row(S.data() + r * G.keys, G.keys, scale, &m[r], e32, e16);
          alpha[r] = j == 0 ? 0.f : std::exp(scale * (old - m[r]));
          l[r] = l[r] * alpha[r] + sum;
        }
        G.pv.execute(s, {{DNNL_ARG_SRC, mem(G.e, E.data())}, {DNNL_ARG_WEIGHTS, mem(G.v, kj + G.k_bytes)},
                         {DNNL_ARG_DST, mem(G.o, (j == 0 ? O : Oj).data())},
                         {DNNL_ARG_SCRATCHPAD, mem(G.pv_pad, pad.data())}});
        if (j > 0)
          for (int64_t r = 0; r < P.rows; ++r)
            for (int64_t d = 0; d < D; ++d) O[r * D + d] = O[r * D + d] * alpha[r] + Oj[r * D + d];
      }
      for (int64_t r = first - r0; r < P.rows; ++r) {
        float* dst = op + ((b.start + r0 + r) * H + h) * D;
        const float inv = 1.f / l[r];
        for (int64_t d = 0; d < D; ++d) dst[d] = O[r * D + d] * inv;
      }
    }
    s.wait();
  }
  return {out};
}

#else

std::vector<paddle::Tensor> BlockAttention(const paddle::Tensor&, const paddle::Tensor&, const paddle::Tensor&,
                                           const paddle::Tensor&, float, bool, int64_t) {
  PD_THROW("pqv_block_attention needs a build with oneDNN headers");
}

#endif

std::vector<std::vector<int64_t>> BlockAttentionShape(const std::vector<int64_t>& q, const std::vector<int64_t>&,
                                                      const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {q};
}

PD_BUILD_OP(pqv_block_attention)
    .Inputs({"q", "k", "v", "cu_seqlens"})
    .Outputs({"out"})
    .Attrs({"scale: float", "bf16: bool", "num_threads: int64_t"})
    .SetKernelFn(PD_KERNEL(BlockAttention))
    .SetInferShapeFn(PD_INFER_SHAPE(BlockAttentionShape));
