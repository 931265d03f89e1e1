// Fused elementwise ops, parallel over rows:
//   pqv_rms_norm(x (M, H), w (H)) -> out
//   pqv_add_rms_norm(x, residual, w) -> out, new_residual (= x + residual)
//   pqv_layer_norm(x (M, H), w (H), b (H)) -> out
//   pqv_swiglu(gate_up (M, 2I)) -> silu(gate_up[:, :I]) * gate_up[:, I:]
//   pqv_quick_gelu(x (any shape)) -> x * sigmoid(1.702 x)
//   pqv_rotary_qkv(qkv (T, (Hq + 2 Hkv) D), cos (T, D), sin (T, D)) -> q (T, Hq, D), k (T, Hkv, D),
//     v (T, Hkv, D): the packed projection cut into heads, q and k rotated
//     (x * cos + rotate_half(x) * sin), v copied. One op where a layer made six Paddle calls.
// Each ends with the attrs num_threads, work_per_thread, portable (common.h: pqv::Exec); the row
// kernels are the AVX512 ones (rows_avx512.cc) unless `portable` or the CPU has no AVX512.
#include <algorithm>
#include <vector>

#include "common.h"
#include "elementwise/row_kernels.h"

namespace {

using paddle::Tensor;

const pqv::RowKernels& row_kernels(const pqv::Exec& ex) { return ex.avx512() ? pqv::kRowAvx512 : pqv::kRowPortable; }

void check_f32(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) PD_CHECK(t->dtype() == paddle::DataType::FLOAT32, "inputs must be float32");
}

// H heads of D at x rotated into out: x * c + rotate_half(x) * s, rotate_half(x) = [-x2, x1].
void rotate_heads(const float* x, const float* c, const float* s, float* out, int64_t H, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < H; ++h, x += D, out += D) {
    for (int64_t d = 0; d < half; ++d) out[d] = x[d] * c[d] - x[d + half] * s[d];
    for (int64_t d = half; d < D; ++d) out[d] = x[d] * c[d] + x[d - half] * s[d];
  }
}

}  // namespace

std::vector<Tensor> RmsNorm(const Tensor& x, const Tensor& w, float eps, int64_t num_threads,
                            int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&x, &w});
  const int64_t H = x.shape().back(), M = x.numel() / H;
  auto out = paddle::empty(x.shape(), x.dtype(), paddle::CPUPlace());
  const float *xp = x.data<float>(), *wp = w.data<float>();
  float* op = out.data<float>();
  const pqv::RowKernels& K = row_kernels(ex);
#pragma omp parallel for num_threads(ex.threads_for(8 * M * H))
  for (int64_t m = 0; m < M; ++m) K.rms_norm(xp + m * H, wp, op + m * H, H, eps);
  return {out};
}

std::vector<Tensor> AddRmsNorm(const Tensor& x, const Tensor& residual, const Tensor& w, float eps,
                               int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&x, &residual, &w});
  const int64_t H = x.shape().back(), M = x.numel() / H;
  auto out = paddle::empty(x.shape(), x.dtype(), paddle::CPUPlace());
  auto res = paddle::empty(x.shape(), x.dtype(), paddle::CPUPlace());
  const float *xp = x.data<float>(), *rp = residual.data<float>(), *wp = w.data<float>();
  float *op = out.data<float>(), *np = res.data<float>();
  const pqv::RowKernels& K = row_kernels(ex);
#pragma omp parallel for num_threads(ex.threads_for(16 * M * H))   // 2 in, 2 out
  for (int64_t m = 0; m < M; ++m) K.add_rms_norm(xp + m * H, rp + m * H, wp, op + m * H, np + m * H, H, eps);
  return {out, res};
}

std::vector<Tensor> LayerNorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps, int64_t num_threads,
                              int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&x, &w, &b});
  const int64_t H = x.shape().back(), M = x.numel() / H;
  PD_CHECK(w.numel() == H && b.numel() == H, "w and b must have x's last dimension");
  auto out = paddle::empty(x.shape(), x.dtype(), paddle::CPUPlace());
  const float *xp = x.data<float>(), *wp = w.data<float>(), *bp = b.data<float>();
  float* op = out.data<float>();
  const pqv::RowKernels& K = row_kernels(ex);
#pragma omp parallel for num_threads(ex.threads_for(8 * M * H))
  for (int64_t m = 0; m < M; ++m) K.layer_norm(xp + m * H, wp, bp, op + m * H, H, eps);
  return {out};
}

std::vector<Tensor> Swiglu(const Tensor& gate_up, int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&gate_up});
  const int64_t M = gate_up.shape()[0], I = gate_up.shape()[1] / 2;
  auto out = paddle::empty({M, I}, gate_up.dtype(), paddle::CPUPlace());
  const float* gp = gate_up.data<float>();
  float* op = out.data<float>();
  const pqv::RowKernels& K = row_kernels(ex);
#pragma omp parallel for num_threads(ex.threads_for(12 * M * I))   // 2I in, I out
  for (int64_t m = 0; m < M; ++m) K.silu_mul(gp + m * 2 * I, gp + m * 2 * I + I, op + m * I, I);
  return {out};
}

std::vector<Tensor> QuickGelu(const Tensor& x, int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&x});
  constexpr int64_t kPiece = 1 << 14;                          // floats per work piece
  const int64_t n = x.numel(), pieces = (n + kPiece - 1) / kPiece;
  auto out = paddle::empty(x.shape(), x.dtype(), paddle::CPUPlace());
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  const pqv::RowKernels& K = row_kernels(ex);
#pragma omp parallel for num_threads(ex.threads_for(8 * n))   // n in, n out
  for (int64_t i = 0; i < pieces; ++i) K.quick_gelu(xp + i * kPiece, op + i * kPiece, std::min(kPiece, n - i * kPiece));
  return {out};
}

std::vector<Tensor> RotaryQkv(const Tensor& qkv, const Tensor& cos, const Tensor& sin, int64_t num_heads,
                              int64_t num_kv_heads, int64_t num_threads, int64_t work_per_thread,
                              bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  check_f32({&qkv, &cos, &sin});
  PD_CHECK(qkv.shape().size() == 2, "qkv must be 2-D: (tokens, (num_heads + 2 * num_kv_heads) * head_dim)");
  const int64_t T = qkv.shape()[0], width = qkv.shape()[1], heads = num_heads + 2 * num_kv_heads;
  PD_CHECK(num_heads > 0 && num_kv_heads > 0 && width % heads == 0,
           "qkv width must be (num_heads + 2 * num_kv_heads) * head_dim");
  const int64_t D = width / heads;
  PD_CHECK(D % 2 == 0 && cos.shape() == std::vector<int64_t>({T, D}) && sin.shape() == cos.shape(),
           "rotary needs an even head_dim and cos/sin of shape (T, head_dim)");
  auto q = paddle::empty({T, num_heads, D}, qkv.dtype(), paddle::CPUPlace());
  auto k = paddle::empty({T, num_kv_heads, D}, qkv.dtype(), paddle::CPUPlace());
  auto v = paddle::empty({T, num_kv_heads, D}, qkv.dtype(), paddle::CPUPlace());
  const float *xp = qkv.data<float>(), *cp = cos.data<float>(), *sp = sin.data<float>();
  float *qp = q.data<float>(), *kp = k.data<float>(), *vp = v.data<float>();
  const int64_t qw = num_heads * D, kw = num_kv_heads * D;
#pragma omp parallel for num_threads(ex.threads_for(8 * T * (width + D)))
  for (int64_t t = 0; t < T; ++t) {
    const float* row = xp + t * width;
    rotate_heads(row, cp + t * D, sp + t * D, qp + t * qw, num_heads, D);
    rotate_heads(row + qw, cp + t * D, sp + t * D, kp + t * kw, num_kv_heads, D);
    std::copy_n(row + qw + kw, kw, vp + t * kw);
  }
  return {q, k, v};
}

using Shape = std::vector<int64_t>;
std::vector<Shape> SameShape(const Shape& x, const Shape&) { return {x}; }
std::vector<Shape> SameShape2(const Shape& x, const Shape&, const Shape&) { return {x, x}; }
std::vector<Shape> SameShape3(const Shape& x, const Shape&, const Shape&) { return {x}; }
std::vector<Shape> HalfShape(const Shape& x) { return {{x[0], x[1] / 2}}; }
std::vector<Shape> Same1(const Shape& x) { return {x}; }
std::vector<Shape> RotaryQkvShape(const Shape& qkv, const Shape&, const Shape&, int64_t num_heads, int64_t num_kv_heads) {
  const int64_t D = qkv[1] / (num_heads + 2 * num_kv_heads);
  return {{qkv[0], num_heads, D}, {qkv[0], num_kv_heads, D}, {qkv[0], num_kv_heads, D}};
}
std::vector<paddle::DataType> F32(const paddle::DataType&) { return {paddle::DataType::FLOAT32}; }
std::vector<paddle::DataType> F32x2(const paddle::DataType&, const paddle::DataType&) { return {paddle::DataType::FLOAT32}; }
std::vector<paddle::DataType> F32x3Three(const paddle::DataType&, const paddle::DataType&, const paddle::DataType&) {
  return {paddle::DataType::FLOAT32, paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}
std::vector<paddle::DataType> F32x3One(const paddle::DataType&, const paddle::DataType&, const paddle::DataType&) {
  return {paddle::DataType::FLOAT32};
}
std::vector<paddle::DataType> F32x3Two(const paddle::DataType&, const paddle::DataType&, const paddle::DataType&) {
  return {paddle::DataType::FLOAT32, paddle::DataType::FLOAT32};
}

PD_BUILD_OP(pqv_rms_norm)
    .Inputs({"x", "w"})
    .Outputs({"out"})
    .Attrs({"eps: float", "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(RmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32x2));

PD_BUILD_OP(pqv_layer_norm)
    .Inputs({"x", "w", "b"})
    .Outputs({"out"})
    .Attrs({"eps: float", "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(LayerNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape3))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32x3One));

PD_BUILD_OP(pqv_add_rms_norm)
    .Inputs({"x", "residual", "w"})
    .Outputs({"out", "new_residual"})
    .Attrs({"eps: float", "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(AddRmsNorm))
    .SetInferShapeFn(PD_INFER_SHAPE(SameShape2))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32x3Two));

PD_BUILD_OP(pqv_swiglu)
    .Inputs({"gate_up"})
    .Outputs({"out"})
    .Attrs({"num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(Swiglu))
    .SetInferShapeFn(PD_INFER_SHAPE(HalfShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32));

PD_BUILD_OP(pqv_quick_gelu)
    .Inputs({"x"})
    .Outputs({"out"})
    .Attrs({"num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(QuickGelu))
    .SetInferShapeFn(PD_INFER_SHAPE(Same1))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32));

PD_BUILD_OP(pqv_rotary_qkv)
    .Inputs({"qkv", "cos", "sin"})
    .Outputs({"q", "k", "v"})
    .Attrs({"num_heads: int64_t", "num_kv_heads: int64_t", "num_threads: int64_t", "work_per_thread: int64_t",
            "portable: bool"})
    .SetKernelFn(PD_KERNEL(RotaryQkv))
    .SetInferShapeFn(PD_INFER_SHAPE(RotaryQkvShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(F32x3Three));
