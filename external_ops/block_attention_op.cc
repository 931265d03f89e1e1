// Non-causal attention within blocks of tokens (the vision towers: one block per frame, or per
// window) as two oneDNN GEMMs per item = (block, head, chunk of query rows):
//   S = q k^T (fp32), e = exp(scale * (S - row max)), O = e v, out = O / row sum of e.
// K and V of each (block, head) are reordered once into the layout oneDNN's GEMM wants for its
// weights, so the chunks do not repack them. bf16: q, e and the packed K / V are bf16 (AMX or
// AVX512-BF16), products summed in fp32; otherwise fp32 throughout. Each thread runs whole items
// on single-threaded primitives (inside our parallel region oneDNN runs inline).
// Long blocks only: the wrapper (ops/block_attention.py) sends short windows to the paged kernel.
#include <algorithm>
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

// Query rows per item: about this many bytes of fp32 scores (rows x block length), 16 to 256 rows.
// One block of 4784 tokens, 16 heads of 80, bf16 (2026-12-05 machine): 0.5 MB 258 GFLOP/s, 1 MB
// 367, 4 MB 348, 8 MB 331.
constexpr int64_t kScoreBytes = int64_t(1) << 20;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// Everything one block length needs: the two GEMMs (created for one thread), the reorders that
// pack a head's K and V, and the scratchpad the largest of them asks for.
struct Plan {
  int64_t n, rows;
  dnnl::matmul qk, pv;
  dnnl::reorder pack_k, pack_v;
  memory::desc q, k, s, e, v, o, k_src, v_src;                // the GEMMs' operands; the packing sources
  memory::desc qk_pad, pv_pad, k_pad, v_pad;                  // scratchpads
  size_t k_bytes, v_bytes, scratch;
};

std::shared_ptr<Plan> make_plan(int64_t n, int64_t H, int64_t D, bool bf16) {
  const auto dt = bf16 ? memory::data_type::bf16 : memory::data_type::f32, f32 = memory::data_type::f32;
  auto p = std::make_shared<Plan>();
  p->n = n;
  p->rows = std::min(n, std::clamp<int64_t>(kScoreBytes / (4 * n) / 16 * 16, 16, 256));
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  pqv::OmpThreads one(1);                    // brgemm fixes its work split when it is created
  // S (rows, n) = q rows of one head (stride H * D) x K^T, K (n, D) as weights (D, n)
  const memory::desc q_md({p->rows, D}, dt, memory::dims{H * D, 1});
  const memory::desc s_md({p->rows, n}, f32, tag::ab);
  dnnl::matmul::primitive_desc qk(engine(), q_md, memory::desc({D, n}, dt, tag::any), s_md, attr);
  // O (rows, D) = e (rows, n) x V (n, D)
  const memory::desc e_md({p->rows, n}, dt, tag::ab), o_md({p->rows, D}, f32, tag::ab);
  dnnl::matmul::primitive_desc pv(engine(), e_md, memory::desc({n, D}, dt, tag::any), o_md, attr);
  // the fp32 inputs of one (block, head): K as (D, n) and V as (n, D), rows H * D apart
  const memory::desc k_src({D, n}, f32, memory::dims{1, H * D}), v_src({n, D}, f32, memory::dims{H * D, 1});
  dnnl::reorder::primitive_desc pk(engine(), k_src, engine(), qk.weights_desc(), attr);
  dnnl::reorder::primitive_desc pvr(engine(), v_src, engine(), pv.weights_desc(), attr);
  p->q = q_md, p->k = qk.weights_desc(), p->s = s_md, p->e = e_md, p->v = pv.weights_desc(), p->o = o_md;
  p->k_src = k_src, p->v_src = v_src;
  p->qk_pad = qk.scratchpad_desc(), p->pv_pad = pv.scratchpad_desc();
  p->k_pad = pk.scratchpad_desc(), p->v_pad = pvr.scratchpad_desc();
  p->qk = dnnl::matmul(qk);
  p->pv = dnnl::matmul(pv);
  p->pack_k = dnnl::reorder(pk);
  p->pack_v = dnnl::reorder(pvr);
  p->k_bytes = qk.weights_desc().get_size();
  p->v_bytes = pv.weights_desc().get_size();
  p->scratch = std::max({qk.scratchpad_desc().get_size(), pv.scratchpad_desc().get_size(),
                         pk.scratchpad_desc().get_size(), pvr.scratchpad_desc().get_size()});
  return p;
}

// Creating the four primitives costs ~1 ms; frames of one video share a length.
std::shared_ptr<Plan> cached_plan(int64_t n, int64_t H, int64_t D, bool bf16) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool>, std::shared_ptr<Plan>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{n, H, D, bf16}];
  if (!slot) {
    if (cache.size() > 256) {
      cache.clear();
      return cache[{n, H, D, bf16}] = make_plan(n, H, D, bf16);
    }
    slot = make_plan(n, H, D, bf16);
  }
  return slot;
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
    packed_bytes += H * int64_t(plan->k_bytes + plan->v_bytes);
    macs += 2 * n * n * H * D;
  }
  auto out = paddle::empty({N, H, D}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  if (blocks.empty()) return {out};
  const int nt = pqv::threads_for(num_threads, macs);
  size_t scratch = 0;
  int64_t max_rows_n = 0, max_rows = 0;
  for (const Block& b : blocks) {
    scratch = std::max(scratch, b.plan->scratch);
    max_rows_n = std::max(max_rows_n, b.plan->rows * b.n);
    max_rows = std::max(max_rows, b.plan->rows);
  }

  std::vector<uint16_t> qb;                                   // q in the GEMMs' dtype
  const void* qa = q.data<float>();
  if (bf16) qa = (qb = pqv::to_bf16(q.data<float>(), N * H * D, nt)).data();
  const int64_t esize = bf16 ? 2 : 4;
  std::unique_ptr<char[]> packed(new char[packed_bytes]);   // not zeroed; 2 MB pages: few faults
  pqv::advise_huge_pages(packed.get(), packed_bytes);
  std::vector<std::tuple<int64_t, int64_t, int64_t>> items;  // (block, head, first query row)
  for (int64_t i = 0; i < int64_t(blocks.size()); ++i)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t r = 0; r < blocks[i].n; r += blocks[i].plan->rows) items.emplace_back(i, h, r);
  const pqv::RowKernels& rk = pqv::has_avx512() ? pqv::kRowAvx512 : pqv::kRowPortable;
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  float* op = out.data<float>();

#pragma omp parallel num_threads(nt)
  {
    std::vector<char> pad(scratch);
    dnnl::stream s(engine());
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    // 1. pack every (block, head)'s K and V, split over the threads
    for (int64_t i = t; i < int64_t(blocks.size()) * H; i += T) {
      const Block& b = blocks[i / H];
      const int64_t h = i % H, at = b.packed + h * int64_t(b.plan->k_bytes + b.plan->v_bytes);
      const Plan& P = *b.plan;
      P.pack_k.execute(s, {{DNNL_ARG_FROM, mem(P.k_src, kp + (b.start * H + h) * D)},
                           {DNNL_ARG_TO, mem(P.k, packed.get() + at)},
                           {DNNL_ARG_SCRATCHPAD, mem(P.k_pad, pad.data())}});
      P.pack_v.execute(s, {{DNNL_ARG_FROM, mem(P.v_src, vp + (b.start * H + h) * D)},
                           {DNNL_ARG_TO, mem(P.v, packed.get() + at + P.k_bytes)},
                           {DNNL_ARG_SCRATCHPAD, mem(P.v_pad, pad.data())}});
    }
#pragma omp barrier
    // 2. items: S, softmax, O, normalize
    std::vector<float> S(max_rows_n), O(max_rows * D), inv(max_rows);
    std::vector<char> E(max_rows_n * esize);
    for (int64_t i = t; i < int64_t(items.size()); i += T) {
      const auto [bi, h, first] = items[i];
      const Block& b = blocks[bi];
      const Plan& P = *b.plan;
      const int64_t r0 = std::min(first, b.n - P.rows);     // the last chunk ends at n (overlapping)
      const char* kv = packed.get() + b.packed + h * int64_t(P.k_bytes + P.v_bytes);
      P.qk.execute(s, {{DNNL_ARG_SRC, mem(P.q, static_cast<const char*>(qa) + ((b.start + r0) * H + h) * D * esize)},
                       {DNNL_ARG_WEIGHTS, mem(P.k, kv)},
                       {DNNL_ARG_DST, mem(P.s, S.data())},
                       {DNNL_ARG_SCRATCHPAD, mem(P.qk_pad, pad.data())}});
      for (int64_t r = 0; r < P.rows; ++r) {
        float* e32 = bf16 ? nullptr : reinterpret_cast<float*>(E.data()) + r * b.n;
        uint16_t* e16 = bf16 ? reinterpret_cast<uint16_t*>(E.data()) + r * b.n : nullptr;
        inv[r] = 1.f / rk.softmax_row(S.data() + r * b.n, b.n, scale, e32, e16);
      }
      P.pv.execute(s, {{DNNL_ARG_SRC, mem(P.e, E.data())},
                       {DNNL_ARG_WEIGHTS, mem(P.v, kv + P.k_bytes)},
                       {DNNL_ARG_DST, mem(P.o, O.data())},
                       {DNNL_ARG_SCRATCHPAD, mem(P.pv_pad, pad.data())}});
      for (int64_t r = first - r0; r < P.rows; ++r) {
        float* dst = op + ((b.start + r0 + r) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] = O[r * D + d] * inv[r];
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
