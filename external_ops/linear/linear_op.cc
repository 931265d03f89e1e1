// pqv_linear: y (M, N) = x (M, K) @ w^T + bias, w (N, K) float32 or bfloat16.
// Decode (M < kGemvRows, fp32 x, AVX512): our own GEMV (gemv/dense_avx512.cc: four weight streams
// per thread; oneDNN's M=1 GEMM read ~31 GB/s where the read probe gave 51; Paddle's MKL GEMV ~21
// on one thread); in bf16 math on AVX512-BF16, M < the attr bf16_gemm_rows (ops/linear.py
// BF16_GEMM_ROWS): the vdpbf16ps kernel (bf16_gemv_avx512). Otherwise oneDNN. bf16 weights: x is
// rounded to bf16 in all three (the fp32 GEMV keeps the rounded values in fp32), products
// accumulate in fp32 -- unless `exact`: then a float32 x meets
// the weights widened to float32 (exact: bf16 is the top half of a float32), i.e. the fp32 math of
// a float32 model whose published bf16 weights are held as they are (half the bytes per decode
// step). The GEMV widens as it reads; prefill widens 2 MB tiles for oneDNN's fp32 GEMM (tile_gemm.h).
// The result has x's dtype; bf16 x needs bf16 w (the wrapper casts).
// Attrs: exact, bf16_gemm_rows, then num_threads, work_per_thread, portable (common.h: pqv::Exec).
#include <algorithm>
#include <vector>

#include "common.h"
#include "gemm/dnnl_gemm.h"
#include "gemm/tile_gemm.h"
#include "gemv/gemv.h"

namespace {

using paddle::DataType;

constexpr int64_t kGemvRows = 16;     // as weight_only_op.cc: from this many rows on, a GEMM

// y = x @ w^T + bias for a few fp32 rows, rows of w split over threads.
void dense_gemv(const paddle::Tensor& x, const paddle::Tensor& w, const float* bias, float* y, bool w_bf16,
                bool exact, bool bf16_math, int nt) {
  const int64_t M = x.shape()[0], K = x.shape()[1], N = w.shape()[0];
  std::vector<float> xr;
  const float* xp = x.data<float>();
  if (bf16_math) {                                // bf16 x and w on vdpbf16ps
    const std::vector<uint16_t> xb = pqv::to_bf16(xp, M * K, nt);
    const pqv::Bf16Gemv p{xb.data(), reinterpret_cast<const uint16_t*>(w.data()), bias, y, M, N, K};
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::bf16_gemv_avx512(p, b, e); });
    return;
  }
  if (w_bf16 && !exact) {                         // the same bf16 x as the GEMM path
    xr.resize(M * K);
    for (int64_t i = 0; i < M * K; ++i) xr[i] = pqv::bf16_to_f32(pqv::f32_to_bf16(xp[i]));
    xp = xr.data();
  }
  const pqv::DenseGemv p{xp, w.data(), w_bf16, bias, y, M, N, K};
  pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::dense_gemv_avx512(p, b, e); });
}

// y = x @ w^T + bias in fp32 for bf16 w: tiles of w widened to float32, each through oneDNN's fp32 GEMM.
void widened_gemm(const float* x, const uint16_t* w, const float* bias, float* y, int64_t M, int64_t N, int64_t K,
                  int nt) {
  pqv::tile_gemm(x, y, bias, nullptr, M, N, K, nt, [&](int64_t n0, int64_t b, int64_t e, float* tile) {
    const uint16_t* src = w + (n0 + b) * K;
    float* dst = tile + b * K;
    for (int64_t i = 0; i < (e - b) * K; ++i) dst[i] = pqv::bf16_to_f32(src[i]);
  });
}

}  // namespace

std::vector<paddle::Tensor> Linear(const paddle::Tensor& x, const paddle::Tensor& w,
                                   const paddle::optional<paddle::Tensor>& bias, bool exact, int64_t bf16_gemm_rows,
                                   int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  const int64_t M = x.shape()[0], K = x.shape()[1], N = w.shape()[0];
  PD_CHECK(w.shape()[1] == K, "w must be (N, K) with K = x.shape[1]");
  const bool x_bf16 = x.dtype() == DataType::BFLOAT16, w_bf16 = w.dtype() == DataType::BFLOAT16;
  const int64_t bytes = 4 * (M * K + M * N) + (w_bf16 ? 2 : 4) * N * K;
  const int nt = ex.threads_for(std::max(bytes, M * N * K));   // decode: bytes; prefill: MACs
  auto y = paddle::empty({M, N}, x.dtype(), paddle::CPUPlace());
  const bool bf16_math = w_bf16 && !exact && ex.fast_bf16();
  if ((M < kGemvRows || (bf16_math && M < bf16_gemm_rows)) && !x_bf16 && ex.avx512()) {
    dense_gemv(x, w, bias ? bias->data<float>() : nullptr, y.data<float>(), w_bf16, exact, bf16_math, nt);
    return {y};
  }
  PD_CHECK(pqv::dnnl_available(), "pqv_linear needs a build with oneDNN headers");
  if (exact && w_bf16 && !x_bf16) {
    widened_gemm(x.data<float>(), reinterpret_cast<const uint16_t*>(w.data<paddle::bfloat16>()),
                 bias ? bias->data<float>() : nullptr, y.data<float>(), M, N, K, nt);
    return {y};
  }
  PD_CHECK(w_bf16 || !x_bf16, "bf16 x with fp32 w: cast x to float32 first (oneDNN has no f32 x f32 -> bf16)");
  std::vector<uint16_t> xb;
  const void* a = x.data();
  if (w_bf16 && !x_bf16) a = (xb = pqv::to_bf16(x.data<float>(), M * K, nt)).data();
  const pqv::Dt in = w_bf16 ? pqv::Dt::bf16 : pqv::Dt::f32, out = x_bf16 ? pqv::Dt::bf16 : pqv::Dt::f32;
  pqv::Gemm g{a, w.data(), bias ? bias->data<float>() : nullptr, y.data(), in, out, M, N, K, N};
  pqv::dnnl_gemm(g, nt);
  return {y};
}

std::vector<std::vector<int64_t>> LinearShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                              const paddle::optional<std::vector<int64_t>>&) {
  return {{x[0], w[0]}};
}

std::vector<paddle::DataType> LinearDtype(const paddle::DataType& x, const paddle::DataType&,
                                          const paddle::optional<paddle::DataType>&) {
  return {x};
}

PD_BUILD_OP(pqv_linear)
    .Inputs({"x", "w", paddle::Optional("bias")})
    .Outputs({"out"})
    .Attrs({"exact: bool", "bf16_gemm_rows: int64_t", "num_threads: int64_t", "work_per_thread: int64_t",
            "portable: bool"})
    .SetKernelFn(PD_KERNEL(Linear))
    .SetInferShapeFn(PD_INFER_SHAPE(LinearShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LinearDtype));
