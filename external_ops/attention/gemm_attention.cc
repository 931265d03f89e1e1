// Attention within spans of tokens on oneDNN GEMMs (gemm_attention.h). An item = (span, query
// head, chunk of query rows); per key block j of its span:
//   S = q k_j^T (fp32), e = exp(scale * (S - running row max m)), O = O * alpha + e v_j,
// alpha = exp(scale * (old m - new m)); at the end out = O / l, l the running sum of e.
// Causal: a chunk meets only the key blocks up to its last row, and in those a row's numerators
// past its own position are zero. GQA: query head h reads kv head h / (Hq / Hkv).
// K and V blocks are reordered once (per kv head) into the layout oneDNN's GEMM wants for its
// weights, so the query chunks and the heads of a group do not repack them. bf16: q, e and the
// packed K / V are bf16 (AMX or AVX512-BF16), products summed in fp32; otherwise fp32 throughout.
// Each thread runs whole items on single-threaded primitives (inside our parallel region oneDNN
// runs inline). With a.amx the spans go to the fused AMX kernel instead (amx_spans: q, k, v packed
// to bf16 tiles once, then items of 128 query rows x one head, block_amx.cc).
#include "attention/gemm_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "attention/attention_kernels.h"
#include "common.h"

namespace pqv {

int64_t gemm_attention_macs(const GemmAttention& a, const std::vector<Span>& spans) {
  int64_t macs = 0;
  for (const Span& s : spans) macs += 2 * s.n * s.n * a.Hq * a.D / (a.causal ? 2 : 1);
  return macs;
}

bool amx_attention_supported(const GemmAttention& a, const Exec& ex) {
  return !a.causal && a.bf16 && a.D % 16 == 0 && a.D <= 80 && ex.fast_bf16() && amx_ready();
}

}  // namespace pqv

#ifdef PQV_WITH_DNNL
#include "oneapi/dnnl/dnnl.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;

// An item's query rows (up to kQueryRows, a span's chunks of equal size) meet its keys in key
// blocks of up to kKeyBlock rows, with an online softmax across the key blocks, so the scores of
// one GEMM (rows x key block, fp32), its numerators and the packed K / V block stay in the L2.
// Causal spans take shorter key blocks: fewer masked scores on the diagonal (bench, bf16, 512-1024
// tokens: 256 keys ~10-15% faster than 512; a long vision block 4784: 512 ~9% faster than 256).
constexpr int64_t kKeyBlock = 512;
constexpr int64_t kQueryRows = 256;
constexpr int64_t kCausalKeyBlock = 256;

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

// The two GEMMs of one (query rows, key block length) shape, created for one thread; the reorders
// that pack a kv head's K and V block into the layouts they want for their weights; the scratchpads.
struct Gemms {
  int64_t rows, keys;
  dnnl::matmul qk, pv;
  dnnl::reorder pack_k, pack_v;
  memory::desc q, k, s, e, v, o, k_src, v_src;                // the GEMMs' operands; the packing sources
  memory::desc qk_pad, pv_pad, k_pad, v_pad;
  size_t k_bytes, v_bytes, scratch;
};

// kv_stride: floats from one token's K (or V) row of a head to the next token's (Hkv * D).
std::shared_ptr<Gemms> make_gemms(int64_t rows, int64_t keys, int64_t kv_stride, int64_t D, bool bf16) {
  const auto dt = bf16 ? memory::data_type::bf16 : memory::data_type::f32, f32 = memory::data_type::f32;
  auto g = std::make_shared<Gemms>();
  g->rows = rows, g->keys = keys;
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  pqv::OmpThreads one(1);                    // brgemm fixes its work split when it is created
  // S (rows, keys) = q rows of one head (head-major copy: contiguous) x K^T, K (keys, D) as weights (D, keys)
  g->q = memory::desc({rows, D}, dt, tag::ab);
  g->s = memory::desc({rows, keys}, f32, tag::ab);
  dnnl::matmul::primitive_desc qk(engine(), g->q, memory::desc({D, keys}, dt, tag::any), g->s, attr);
  // O (rows, D) = e (rows, keys) x V (keys, D)
  g->e = memory::desc({rows, keys}, dt, tag::ab);
  g->o = memory::desc({rows, D}, f32, tag::ab);
  dnnl::matmul::primitive_desc pv(engine(), g->e, memory::desc({keys, D}, dt, tag::any), g->o, attr);
  // the fp32 inputs: K as (D, keys) and V as (keys, D), token rows kv_stride apart
  g->k_src = memory::desc({D, keys}, f32, memory::dims{1, kv_stride});
  g->v_src = memory::desc({keys, D}, f32, memory::dims{kv_stride, 1});
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

// A span of n tokens: query chunks of `rows` (the last one ends at n, overlapping the one before),
// key blocks of `keys` rows but the last, `tail` ones; per kv head its packed K, V blocks in turn.
struct Plan {
  int64_t rows, keys, key_blocks;
  std::shared_ptr<Gemms> full, tail;
  int64_t head_bytes;
  const Gemms& gemms(int64_t j) const { return j + 1 < key_blocks ? *full : *tail; }
  int64_t offset(int64_t j) const { return j * int64_t(full->k_bytes + full->v_bytes); }
};

// Creating primitives costs ~1 ms each; frames of one video share a length, the layers of a
// prefill share a prompt. Bounded caches.
template <typename K, typename V, typename Make>
std::shared_ptr<V> cached(std::map<K, std::shared_ptr<V>>& cache, const K& key, Make make) {
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 256) cache.clear();
  return cache[key] = make();
}

std::shared_ptr<Plan> cached_plan(int64_t n, int64_t kv_stride, int64_t D, bool bf16, bool causal) {
  static std::mutex mu;
  static std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, bool>, std::shared_ptr<Gemms>> gemms;
  static std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool>, std::shared_ptr<Plan>> plans;
  std::lock_guard<std::mutex> lock(mu);
  return cached(plans, std::make_tuple(n, kv_stride, D, bf16, causal), [&] {
    auto p = std::make_shared<Plan>();
    const int64_t chunks = (n + kQueryRows - 1) / kQueryRows, key_block = causal ? kCausalKeyBlock : kKeyBlock;
    p->rows = std::min(n, round16((n + chunks - 1) / chunks));
    p->key_blocks = (n + key_block - 1) / key_block;
    p->keys = std::min(n, round16((n + p->key_blocks - 1) / p->key_blocks));
    p->key_blocks = (n + p->keys - 1) / p->keys;
    const int64_t tail = n - (p->key_blocks - 1) * p->keys;
    auto get = [&](int64_t keys) {
      return cached(gemms, std::make_tuple(p->rows, keys, kv_stride, D, bf16),
                    [&] { return make_gemms(p->rows, keys, kv_stride, D, bf16); });
    };
    p->full = get(p->keys);
    p->tail = tail == p->keys ? p->full : get(tail);
    p->head_bytes = p->offset(p->key_blocks - 1) + int64_t(p->tail->k_bytes + p->tail->v_bytes);
    return p;
  });
}

memory mem(const memory::desc& md, const void* p) { return memory(md, engine(), const_cast<void*>(p)); }

struct PlannedSpan {
  pqv::Span span;
  std::shared_ptr<Plan> plan;
  int64_t packed;         // offset of its kv heads' packed K / V in the packed buffer
};

struct Item {
  int64_t span, head, first, key_blocks;   // query head; first new row of its chunk; key blocks it meets
  int64_t cost;
};

}  // namespace

namespace pqv {

bool gemm_attention_built() { return true; }

namespace {

constexpr int64_t kAmxGroupsPerItem = 8;      // 128 query rows per AMX work item

// n elements, 64-byte aligned: the AMX operands' tile rows each a whole cache line (rows split over
// two lines ran the kernel at half speed).
template <typename T>
std::unique_ptr<T[], decltype(&std::free)> aligned(int64_t n) {
  const int64_t bytes = (n * int64_t(sizeof(T)) + 63) / 64 * 64;
  T* p = static_cast<T*>(std::aligned_alloc(64, bytes));
  PD_CHECK(p != nullptr, "attention: out of memory for ", bytes, " bytes of packed operands");
  return {p, &std::free};
}

void amx_spans(const GemmAttention& a, const std::vector<Span>& spans, int nt) {
  const int64_t Hq = a.Hq, Hkv = a.Hkv, D = a.D, G = Hq / Hkv, Dp = amx_padded_depth(D);
  struct Packed { Span span; int64_t groups, q, k, v; };   // offsets of its heads' operands
  std::vector<Packed> ps;
  int64_t q_elems = 0, k_elems = 0, v_elems = 0;
  for (const Span& s : spans) {
    if (s.n == 0) continue;
    const int64_t groups = (s.n + 15) / 16;
    ps.push_back({s, groups, q_elems, k_elems, v_elems});
    q_elems += Hq * groups * 16 * Dp, k_elems += Hkv * amx_k_elems(s.n, D), v_elems += Hkv * amx_v_elems(s.n, D);
  }
  if (ps.empty()) return;
  auto qb = aligned<uint16_t>(q_elems), kb = aligned<uint16_t>(k_elems), vb = aligned<uint16_t>(v_elems);
  advise_huge_pages(qb.get(), q_elems * 2);             // fresh buffers: 2 MB pages, few faults
  advise_huge_pages(kb.get(), k_elems * 2);
  advise_huge_pages(vb.get(), v_elems * 2);
  struct Item { int64_t span, head, group0, groups; };
  std::vector<Item> items;
  for (int64_t i = 0; i < int64_t(ps.size()); ++i)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t g = 0; g < ps[i].groups; g += kAmxGroupsPerItem)
        items.push_back({i, h, g, std::min(kAmxGroupsPerItem, ps[i].groups - g)});
  const int64_t packs = int64_t(ps.size()) * Hq;
  const int64_t per_thread = (amx_scratch_floats(kAmxGroupsPerItem, D) + 15) / 16 * 16;   // whole lines
  auto scratches = aligned<float>(nt * per_thread);       // allocated here: no throw inside the region
  std::atomic<int64_t> next{0};
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    for (int64_t i = t; i < packs; i += T) {        // q of every (span, head); k, v of every kv head
      const Packed& p = ps[i / Hq];
      const int64_t h = i % Hq, start = p.span.start, n = p.span.n;
      amx_pack_q(a.q + (start * Hq + h) * D, Hq * D, n, p.groups, D, qb.get() + p.q + h * p.groups * 16 * Dp);
      if (h < Hkv) {
        amx_pack_k(a.k + (start * Hkv + h) * D, Hkv * D, n, D, kb.get() + p.k + h * amx_k_elems(n, D));
        amx_pack_v(a.v + (start * Hkv + h) * D, Hkv * D, n, D, vb.get() + p.v + h * amx_v_elems(n, D));
      }
    }
#pragma omp barrier
    float* scratch = scratches.get() + t * per_thread;
    for (int64_t i = next.fetch_add(1); i < int64_t(items.size()); i = next.fetch_add(1)) {
      const Item& it = items[i];
      const Packed& p = ps[it.span];
      const int64_t n = p.span.n, r0 = it.group0 * 16, kh = it.head / G;
      AmxAttention job{qb.get() + p.q + (it.head * p.groups + it.group0) * 16 * Dp,
                       kb.get() + p.k + kh * amx_k_elems(n, D), vb.get() + p.v + kh * amx_v_elems(n, D),
                       std::min(it.groups * 16, n - r0), it.groups, n, D, a.scale,
                       a.out + ((p.span.start + r0) * Hq + it.head) * D, Hq * D, scratch};
      amx_attention(job);
    }
  }
}

}  // namespace

void gemm_attention(const GemmAttention& a, const std::vector<Span>& spans, const Exec& ex) {
  PD_CHECK(a.Hkv > 0 && a.Hq % a.Hkv == 0, "query heads must be a multiple of kv heads");
  PD_CHECK(!a.bf16 || ex.fast_bf16(), "bf16 attention needs a CPU with AVX512-BF16 (and portable=false)");
  const int nt = ex.threads_for(gemm_attention_macs(a, spans));
  if (a.amx) {
    PD_CHECK(amx_attention_supported(a, ex), "amx=true needs non-causal bf16 attention, a head dim that is a "
             "multiple of 16 up to 80 and a CPU with AMX-BF16 (the wrapper asks build_info()['amx'] first)");
    return amx_spans(a, spans, nt);
  }
  const int64_t N = a.tokens, Hq = a.Hq, Hkv = a.Hkv, D = a.D, G = Hq / Hkv;
  const bool bf16 = a.bf16;
  std::vector<PlannedSpan> ps;
  int64_t packed_bytes = 0;
  for (const Span& s : spans) {
    if (s.n == 0) continue;
    auto plan = cached_plan(s.n, Hkv * D, D, bf16, a.causal);
    ps.push_back({s, plan, packed_bytes});
    packed_bytes += Hkv * plan->head_bytes;
  }
  if (ps.empty()) return;
  size_t scratch = 0;
  int64_t max_rows = 0, max_scores = 0;
  std::vector<int64_t> tokens;                       // the spans' tokens, for the q copy
  for (const PlannedSpan& p : ps) {
    scratch = std::max({scratch, p.plan->full->scratch, p.plan->tail->scratch});
    max_rows = std::max(max_rows, p.plan->rows);
    max_scores = std::max(max_scores, p.plan->rows * p.plan->keys);
    for (int64_t t = p.span.start; t < p.span.start + p.span.n; ++t) tokens.push_back(t);
  }

  // q head-major (Hq, N, D) in the GEMMs' dtype: contiguous rows for the S GEMM
  const int64_t esize = bf16 ? 2 : 4;
  std::vector<char> qh(N * Hq * D * esize);
  const int64_t copies = int64_t(tokens.size()) * Hq;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < copies; ++i) {
    const int64_t t = tokens[i / Hq], h = i % Hq;
    const float* src = a.q + (t * Hq + h) * D;
    if (bf16) {
      uint16_t* dst = reinterpret_cast<uint16_t*>(qh.data()) + (h * N + t) * D;
      for (int64_t d = 0; d < D; ++d) dst[d] = f32_to_bf16(src[d]);
    } else {
      std::copy_n(src, D, reinterpret_cast<float*>(qh.data()) + (h * N + t) * D);
    }
  }
  std::unique_ptr<char[]> packed(new char[packed_bytes]);   // not zeroed; 2 MB pages: few faults
  advise_huge_pages(packed.get(), packed_bytes);
  std::vector<std::tuple<int64_t, int64_t, int64_t>> packs;  // (span, kv head, key block)
  std::vector<Item> items;
  for (int64_t i = 0; i < int64_t(ps.size()); ++i) {
    const Plan& P = *ps[i].plan;
    const int64_t n = ps[i].span.n;
    for (int64_t h = 0; h < Hkv; ++h)
      for (int64_t j = 0; j < P.key_blocks; ++j) packs.emplace_back(i, h, j);
    for (int64_t r = 0; r < n; r += P.rows) {
      const int64_t last = std::min(r, n - P.rows) + P.rows - 1;          // the chunk's last row
      const int64_t kb = a.causal ? last / P.keys + 1 : P.key_blocks;
      for (int64_t h = 0; h < Hq; ++h) items.push_back({i, h, r, kb, kb * P.rows});
    }
  }
  // largest first, handed out one at a time: causal chunks differ in cost
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.cost > y.cost; });
  const auto softmax_row = ex.avx512() ? softmax_row_avx512 : softmax_row_portable;
  std::atomic<int64_t> next{0};

#pragma omp parallel num_threads(nt)
  {
    std::vector<char> pad(scratch);
    dnnl::stream s(engine());
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    // 1. pack every K and V block of every (span, kv head), split over the threads
    for (int64_t i = t; i < int64_t(packs.size()); i += T) {
      const auto [si, h, j] = packs[i];
      const PlannedSpan& p = ps[si];
      const Gemms& Gj = p.plan->gemms(j);
      char* at = packed.get() + p.packed + h * p.plan->head_bytes + p.plan->offset(j);
      const int64_t src = ((p.span.start + j * p.plan->keys) * Hkv + h) * D;
      Gj.pack_k.execute(s, {{DNNL_ARG_FROM, mem(Gj.k_src, a.k + src)}, {DNNL_ARG_TO, mem(Gj.k, at)},
                            {DNNL_ARG_SCRATCHPAD, mem(Gj.k_pad, pad.data())}});
      Gj.pack_v.execute(s, {{DNNL_ARG_FROM, mem(Gj.v_src, a.v + src)}, {DNNL_ARG_TO, mem(Gj.v, at + Gj.k_bytes)},
                            {DNNL_ARG_SCRATCHPAD, mem(Gj.v_pad, pad.data())}});
    }
#pragma omp barrier
    // 2. items: per key block S, online softmax, O = O * alpha + e v; then O / l
    std::vector<float> S(max_scores), O(max_rows * D), Oj(max_rows * D), m(max_rows), l(max_rows), alpha(max_rows);
    std::vector<char> E(max_scores * esize);
    for (int64_t i = next.fetch_add(1); i < int64_t(items.size()); i = next.fetch_add(1)) {
      const Item& it = items[i];
      const PlannedSpan& p = ps[it.span];
      const Plan& P = *p.plan;
      const int64_t n = p.span.n, r0 = std::min(it.first, n - P.rows);   // the last chunk ends at n
      const char* qr = qh.data() + (it.head * N + p.span.start + r0) * D * esize;
      const char* kv = packed.get() + p.packed + (it.head / G) * P.head_bytes;
      std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.end(), 0.f);
      for (int64_t j = 0; j < it.key_blocks; ++j) {
        const Gemms& Gj = P.gemms(j);
        const char* kj = kv + P.offset(j);
        Gj.qk.execute(s, {{DNNL_ARG_SRC, mem(Gj.q, qr)}, {DNNL_ARG_WEIGHTS, mem(Gj.k, kj)},
                          {DNNL_ARG_DST, mem(Gj.s, S.data())}, {DNNL_ARG_SCRATCHPAD, mem(Gj.qk_pad, pad.data())}});
        for (int64_t r = 0; r < P.rows; ++r) {
          float* e32 = bf16 ? nullptr : reinterpret_cast<float*>(E.data()) + r * Gj.keys;
          uint16_t* e16 = bf16 ? reinterpret_cast<uint16_t*>(E.data()) + r * Gj.keys : nullptr;
          // causal: row r0 + r sees keys up to its own position; every row sees key 0 (block 0)
          const int64_t valid = a.causal ? std::clamp<int64_t>(r0 + r - j * P.keys + 1, 0, Gj.keys) : Gj.keys;
          if (valid < Gj.keys) {
            if (bf16) std::fill(e16 + valid, e16 + Gj.keys, uint16_t(0));
            else std::fill(e32 + valid, e32 + Gj.keys, 0.f);
          }
          if (valid == 0) {
            alpha[r] = 1.f;
            continue;
          }
          const float old = m[r];
          const float sum = softmax_row(S.data() + r * Gj.keys, valid, a.scale, &m[r], e32, e16);
          alpha[r] = j == 0 ? 0.f : std::exp(a.scale * (old - m[r]));
          l[r] = l[r] * alpha[r] + sum;
        }
        Gj.pv.execute(s, {{DNNL_ARG_SRC, mem(Gj.e, E.data())}, {DNNL_ARG_WEIGHTS, mem(Gj.v, kj + Gj.k_bytes)},
                          {DNNL_ARG_DST, mem(Gj.o, (j == 0 ? O : Oj).data())},
                          {DNNL_ARG_SCRATCHPAD, mem(Gj.pv_pad, pad.data())}});
        if (j > 0)
          for (int64_t r = 0; r < P.rows; ++r)
            for (int64_t d = 0; d < D; ++d) O[r * D + d] = O[r * D + d] * alpha[r] + Oj[r * D + d];
      }
      for (int64_t r = it.first - r0; r < P.rows; ++r) {
        float* dst = a.out + ((p.span.start + r0 + r) * Hq + it.head) * D;
        const float inv = 1.f / l[r];
        for (int64_t d = 0; d < D; ++d) dst[d] = O[r * D + d] * inv;
      }
    }
    s.wait();
  }
}

}  // namespace pqv

#else

namespace pqv {

bool gemm_attention_built() { return false; }

void gemm_attention(const GemmAttention&, const std::vector<Span>&, const Exec&) {
  PD_THROW("GEMM attention needs a build with oneDNN headers");
}

}  // namespace pqv

#endif
