// pqv_decoder_layer: one Qwen2 decoder layer in one op call, chaining the single ops' kernel
// functions (op_entries.h) in C++:
//   h, res = add_rms_norm(x, residual)        (first layer: rms_norm(x), res = x)
//   q, k, v = rotary_qkv(qkv_proj(h))         -> paged attention over the cache (written in place)
//   h, res = add_rms_norm(o_proj(attn), res)
//   out = down_proj(swiglu(gate_up_proj(h)))  -> returns (out, res)
// Why: after each weight stream the Python/Paddle side of the next call runs with cold caches,
// ~100-300 us per op call on a Xeon, and a layer made ~9 such calls. The
// result is that of the single ops called in this order, bit for bit.
//
// weights: [input_layernorm, qkv, qkv_bias, o, post_attention_layernorm, gate_up, down]. Each of
// the four linears is dense (float32 / bfloat16, pqv_linear) or weight-only (int8: int8, int4:
// uint8 packed, pqv_weight_only_int8/int4 with their defaults: VNNI decode, bf16 prefill), by its
// dtype; `scales` holds the scales of the weight-only ones, in that order.
// gemm_sequences: the sequences whose attention runs in bf16 on oneDNN GEMMs (pqv_paged_attention's
// attr of that name: long fresh prompts of a bfloat16 model, chosen by ops/paged_attention.py).
// exact_linears: bf16 dense weights meet x in fp32 math (pqv_linear's `exact`: a float32 model
// holding its checkpoint's bf16 weights as they are); else x is rounded to bf16 (a bfloat16 model).
// int8_prefill_tiles: pqv_weight_only_int8's attr of that name; vnni_gemm_rows: both weight-only ops';
// bf16_gemm_rows: pqv_linear's.
// Then num_threads, work_per_thread, portable (common.h: pqv::Exec), passed to every single op.
#include <vector>

#include "common.h"
#include "decoder/op_entries.h"

namespace {

using paddle::Tensor;

enum Weight { kLn1, kQkv, kQkvBias, kO, kLn2, kGateUp, kDown, kNumWeights };

struct Linears {
  const std::vector<Tensor>& w;
  const std::vector<Tensor>* scales;
  int64_t group_size;
  bool exact;                                   // float32 math for bf16 weights (a float32 model's)
  bool int8_prefill_tiles;
  int64_t vnni_gemm_rows;
  int64_t bf16_gemm_rows;
  const pqv::Exec& ex;
  size_t next_scale = 0;

  Tensor operator()(const Tensor& x, Weight i, const paddle::optional<Tensor>& bias = paddle::none) {
    const Tensor& weight = w[i];
    const auto dt = weight.dtype();
    if (dt == paddle::DataType::FLOAT32 || dt == paddle::DataType::BFLOAT16)
      return Linear(x, weight, bias, exact, bf16_gemm_rows, ex.num_threads, ex.work_per_thread, ex.portable)[0];
    PD_CHECK(scales != nullptr && next_scale < scales->size(), "a weight-only linear has no scales tensor");
    const Tensor& s = (*scales)[next_scale++];
    if (dt == paddle::DataType::INT8)
      return WeightOnlyInt8(x, weight, s, bias, false, true, int8_prefill_tiles, vnni_gemm_rows, ex.num_threads,
                            ex.work_per_thread, ex.portable)[0];
    PD_CHECK(dt == paddle::DataType::UINT8, "linear weights must be float32, bfloat16, int8 or uint8 (int4)");
    return WeightOnlyInt4(x, weight, s, bias, group_size, false, true, vnni_gemm_rows, ex.num_threads,
                          ex.work_per_thread, ex.portable)[0];
  }
};

}  // namespace

std::vector<Tensor> DecoderLayer(const Tensor& x, const paddle::optional<Tensor>& residual,
                                 const std::vector<Tensor>& weights,
                                 const paddle::optional<std::vector<Tensor>>& scales, const Tensor& cos,
                                 const Tensor& sin, Tensor& k_cache, Tensor& v_cache, const Tensor& slot_mapping,
                                 const Tensor& block_tables, const Tensor& token_seq, const Tensor& token_ctx,
                                 float eps, int64_t num_heads, int64_t num_kv_heads, float scale,
                                 int64_t block_size, int64_t group_size, const std::vector<int64_t>& gemm_sequences,
                                 bool exact_linears, bool int8_prefill_tiles, int64_t vnni_gemm_rows,
                                 int64_t bf16_gemm_rows, int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(weights.size() == kNumWeights, "weights must be [input_layernorm, qkv, qkv_bias, o, "
           "post_attention_layernorm, gate_up, down]");
  PD_CHECK(x.shape().size() == 2 && x.dtype() == paddle::DataType::FLOAT32, "x must be float32 (tokens, hidden)");
  Linears linear{weights, scales ? &*scales : nullptr, group_size, exact_linears, int8_prefill_tiles, vnni_gemm_rows,
                 bf16_gemm_rows, ex};
  Tensor h, res;
  if (residual) {
    auto hr = AddRmsNorm(x, *residual, weights[kLn1], eps, num_threads, work_per_thread, portable);
    h = hr[0], res = hr[1];
  } else {
    h = RmsNorm(x, weights[kLn1], eps, num_threads, work_per_thread, portable)[0], res = x;
  }
  auto qkv = RotaryQkv(linear(h, kQkv, weights[kQkvBias]), cos, sin, num_heads, num_kv_heads, num_threads,
                       work_per_thread, portable);
  const Tensor attn = PagedAttention(qkv[0], qkv[1], qkv[2], k_cache, v_cache, slot_mapping, block_tables,
                                     token_seq, token_ctx, scale, block_size, gemm_sequences, num_threads,
                                     work_per_thread, portable)[0];
  const int64_t T = x.shape()[0];
  auto hr = AddRmsNorm(linear(paddle::experimental::reshape(attn, {T, attn.numel() / T}), kO), res,  // (T, Hq * D)
                       weights[kLn2], eps, num_threads, work_per_thread, portable);
  Tensor out = linear(Swiglu(linear(hr[0], kGateUp), num_threads, work_per_thread, portable)[0], kDown);
  PD_CHECK(!scales || linear.next_scale == scales->size(), "more scales tensors than weight-only linears");
  return {out, hr[1]};                                          // the caches: written in place
}

// pqv_decoder_stack: every decoder layer of a step in one op call, each as DecoderLayer above.
// weights: the layers' WEIGHT lists one after the other (kNumWeights per layer); scales: all the
// weight-only linears' scales in layer order; k_caches / v_caches: one per layer, written in place
// through their buffers (dygraph only: a static graph keeps the per-layer calls). Why: a step of
// a 2B model made 28 pqv_decoder_layer calls from Python, ~230 us each outside the C++ body with
// cold caches.
std::vector<Tensor> DecoderStack(const Tensor& x, const std::vector<Tensor>& weights,
                                 const paddle::optional<std::vector<Tensor>>& scales, const Tensor& cos,
                                 const Tensor& sin, const std::vector<Tensor>& k_caches,
                                 const std::vector<Tensor>& v_caches, const Tensor& slot_mapping,
                                 const Tensor& block_tables, const Tensor& token_seq, const Tensor& token_ctx,
                                 float eps, int64_t num_heads, int64_t num_kv_heads, float scale,
                                 int64_t block_size, int64_t group_size, const std::vector<int64_t>& gemm_sequences,
                                 bool exact_linears, bool int8_prefill_tiles, int64_t vnni_gemm_rows,
                                 int64_t bf16_gemm_rows, int64_t num_threads, int64_t work_per_thread, bool portable) {
  const size_t L = k_caches.size();
  PD_CHECK(L > 0 && v_caches.size() == L && weights.size() == L * kNumWeights,
           "pqv_decoder_stack: one k and one v cache per layer and ", int(kNumWeights), " weights per layer");
  size_t next_scale = 0;
  Tensor h = x;
  paddle::optional<Tensor> residual;
  for (size_t l = 0; l < L; ++l) {
    const std::vector<Tensor> w(weights.begin() + l * kNumWeights, weights.begin() + (l + 1) * kNumWeights);
    std::vector<Tensor> s;                     // this layer's scales: one per weight-only linear
    for (Weight i : {kQkv, kO, kGateUp, kDown}) {
      const auto dt = w[i].dtype();
      if (dt == paddle::DataType::INT8 || dt == paddle::DataType::UINT8) {
        PD_CHECK(scales && next_scale < scales->size(), "a weight-only linear has no scales tensor");
        s.push_back((*scales)[next_scale++]);
      }
    }
    Tensor kc = k_caches[l], vc = v_caches[l];   // handles to the same buffers
    auto out = DecoderLayer(h, residual, w, s.empty() ? paddle::optional<std::vector<Tensor>>() : s, cos, sin, kc,
                            vc, slot_mapping, block_tables, token_seq, token_ctx, eps, num_heads, num_kv_heads,
                            scale, block_size, group_size, gemm_sequences, exact_linears, int8_prefill_tiles,
                            vnni_gemm_rows, bf16_gemm_rows, num_threads, work_per_thread, portable);
    h = out[0], residual = out[1];
  }
  PD_CHECK(!scales || next_scale == scales->size(), "more scales tensors than weight-only linears");
  return {h, *residual};
}

std::vector<std::vector<int64_t>> DecoderLayerShape(
    const std::vector<int64_t>& x, const paddle::optional<std::vector<int64_t>>&,
    const std::vector<std::vector<int64_t>>&, const paddle::optional<std::vector<std::vector<int64_t>>>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>& kc,
    const std::vector<int64_t>& vc, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&) {
  return {x, x, kc, vc};
}

std::vector<paddle::DataType> DecoderLayerDtype(
    const paddle::DataType& x, const paddle::optional<paddle::DataType>&, const std::vector<paddle::DataType>&,
    const paddle::optional<std::vector<paddle::DataType>>&, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType& kc, const paddle::DataType& vc, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&) {
  return {x, x, kc, vc};
}

PD_BUILD_OP(pqv_decoder_layer)
    .Inputs({"x", paddle::Optional("residual"), paddle::Vec("weights"), paddle::Optional(paddle::Vec("scales")),
             "cos", "sin", "k_cache", "v_cache", "slot_mapping", "block_tables", "token_seq", "token_ctx"})
    .Outputs({"out", "residual_out", "k_cache_out", "v_cache_out"})
    .SetInplaceMap({{"k_cache", "k_cache_out"}, {"v_cache", "v_cache_out"}})
    .Attrs({"eps: float", "num_heads: int64_t", "num_kv_heads: int64_t", "scale: float", "block_size: int64_t",
            "group_size: int64_t", "gemm_sequences: std::vector<int64_t>", "exact_linears: bool",
            "int8_prefill_tiles: bool", "vnni_gemm_rows: int64_t", "bf16_gemm_rows: int64_t",
            "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(DecoderLayer))
    .SetInferShapeFn(PD_INFER_SHAPE(DecoderLayerShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DecoderLayerDtype));

std::vector<std::vector<int64_t>> DecoderStackShape(
    const std::vector<int64_t>& x, const std::vector<std::vector<int64_t>>&,
    const paddle::optional<std::vector<std::vector<int64_t>>>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<std::vector<int64_t>>&, const std::vector<std::vector<int64_t>>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&) {
  return {x, x};
}

std::vector<paddle::DataType> DecoderStackDtype(
    const paddle::DataType& x, const std::vector<paddle::DataType>&,
    const paddle::optional<std::vector<paddle::DataType>>&, const paddle::DataType&, const paddle::DataType&,
    const std::vector<paddle::DataType>&, const std::vector<paddle::DataType>&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&, const paddle::DataType&) {
  return {x, x};
}

PD_BUILD_OP(pqv_decoder_stack)
    .Inputs({"x", paddle::Vec("weights"), paddle::Optional(paddle::Vec("scales")), "cos", "sin",
             paddle::Vec("k_caches"), paddle::Vec("v_caches"), "slot_mapping", "block_tables", "token_seq",
             "token_ctx"})
    .Outputs({"out", "residual_out"})
    .Attrs({"eps: float", "num_heads: int64_t", "num_kv_heads: int64_t", "scale: float", "block_size: int64_t",
            "group_size: int64_t", "gemm_sequences: std::vector<int64_t>", "exact_linears: bool",
            "int8_prefill_tiles: bool", "vnni_gemm_rows: int64_t", "bf16_gemm_rows: int64_t",
            "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(DecoderStack))
    .SetInferShapeFn(PD_INFER_SHAPE(DecoderStackShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(DecoderStackDtype));
