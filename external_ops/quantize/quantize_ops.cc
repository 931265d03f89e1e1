// Weight quantization at load time (layouts: paddle_qwenvl/ops/weight_only_linear.py).
// pqv_quantize_int8: per row the scale max(absmax / 127, 1e-10), q = clamp(round_half_even(w / s),
// -127, 127); one pass per row where the Paddle reference makes ~6 over the whole matrix.
// pqv_quantize_int4: per group of `group` weights along K, the scale among absmax * ratio / 7 with
// the least squared error (first ratio wins ties; the search multiplies by 1 / s, see group_error),
// then q = clamp(round_half_even(w / s), -8, 7) + 8
// packed two per byte (low nibble = even k). The Paddle reference (_int4_scales) makes ~90 passes
// over the whole matrix; here each group stays in L1 for all its ratios.
// Attrs: [group, ratios,] then num_threads, work_per_thread, portable (common.h: pqv::Exec); the
// AVX512F loops (quantize_avx512.cc) give the same bytes as the portable ones here.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "quantize/quantize_kernels.h"

namespace {

// round half to even, as paddle.round, in a form the compiler vectorizes (|v| < 2^22, default
// rounding mode); clamping to [-9, 8] first changes nothing after the clamp to [-8, 7]
inline float level(float v) {
  const float r = (std::min(std::max(v, -9.f), 8.f) + 12582912.f) - 12582912.f;
  return std::min(std::max(r, -8.f), 7.f);
}

// Squared error of the group at scale s; 16 partial sums so the loop vectorizes. n % 16 == 0.
// It multiplies by 1 / s where the final levels divide by s: a level can differ for a weight
// within an ulp of a rounding boundary, which moves the error sum by far less than ratios differ
// (13 divisions per weight were most of an int4 load's time).
inline float group_error(const float* x, int64_t n, float s) {
  const float inv = 1.f / s;
  float part[16] = {0.f};
  for (int64_t i = 0; i < n; i += 16)
    for (int j = 0; j < 16; ++j) {
      const float d = level(x[i + j] * inv) * s - x[i + j];
      part[j] += d * d;
    }
  float err = 0.f;
  for (float p : part) err += p;
  return err;
}

float best_scale(const float* x, int64_t n, const std::vector<float>& ratios, bool avx512) {
  float amax = 0.f;
  if (avx512) {
    amax = pqv::group_amax_avx512(x, n);
  } else {
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  }
  float best_s = 0.f, best_e = 0.f;
  for (size_t r = 0; r < ratios.size(); ++r) {
    const float s = std::max(amax * ratios[r] / 7.f, 1e-10f);
    const float e = avx512 ? pqv::group_error_avx512(x, n, s) : group_error(x, n, s);
    if (r == 0 || e < best_e) best_s = s, best_e = e;
  }
  return best_s;
}

void quantize_row(const float* w, int64_t K, int64_t group, const std::vector<float>& ratios, uint8_t* q,
                  float* scales, bool avx512) {
  std::vector<float> levels(group);
  for (int64_t g = 0; g < K / group; ++g) {
    const float* x = w + g * group;
    const float s = best_scale(x, group, ratios, avx512);
    scales[g] = s;
    if (avx512) {
      pqv::group_levels_avx512(x, group, s, levels.data());
    } else {
      for (int64_t i = 0; i < group; ++i) levels[i] = level(x[i] / s) + 8.f;
    }
    for (int64_t i = 0; i < group; i += 2)
      q[(g * group + i) / 2] = static_cast<uint8_t>(levels[i]) | (static_cast<uint8_t>(levels[i + 1]) << 4);
  }
}

// 16 partial maxima (a form the compiler vectorizes); ternary clamps (std::min/max kept the
// quantize loop scalar and twice as slow)
void quantize_row_int8(const float* w, int64_t K, int8_t* q, float* scale, bool avx512) {
  float part[16] = {0.f};
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    for (int j = 0; j < 16; ++j) part[j] = std::max(part[j], std::fabs(w[k + j]));
  float amax = 0.f;
  for (float p : part) amax = std::max(amax, p);
  for (; k < K; ++k) amax = std::max(amax, std::fabs(w[k]));
  const float s = std::max(amax / 127.f, 1e-10f);
  *scale = s;
  k = avx512 ? pqv::quantize_int8_avx512(w, K, s, q) : 0;
  for (; k < K; ++k) {             // clamping before rounding equals clip(round(.)) on [-127, 127]
    float v = w[k] / s;
    v = v < -127.f ? -127.f : v;
    v = v > 127.f ? 127.f : v;
    q[k] = static_cast<int8_t>(static_cast<int32_t>((v + 12582912.f) - 12582912.f));   // half to even
  }
}

}  // namespace

std::vector<paddle::Tensor> QuantizeInt8(const paddle::Tensor& w, int64_t num_threads, int64_t work_per_thread,
                                         bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(w.dtype() == paddle::DataType::FLOAT32 && w.shape().size() == 2, "w must be float32 (N, K)");
  const int64_t N = w.shape()[0], K = w.shape()[1];
  auto q = paddle::empty({N, K}, paddle::DataType::INT8, paddle::CPUPlace());
  auto scales = paddle::empty({N}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  const float* src = w.data<float>();
  int8_t* qp = q.data<int8_t>();
  float* sp = scales.data<float>();
  pqv::advise_huge_pages(qp, N * K);               // the model keeps these: fault them in as 2 MB pages
  const bool avx512 = ex.avx512();
#pragma omp parallel for num_threads(ex.threads_for(5 * N * K))
  for (int64_t n = 0; n < N; ++n) quantize_row_int8(src + n * K, K, qp + n * K, sp + n, avx512);
  return {q, scales};
}

PD_BUILD_OP(pqv_quantize_int8)
    .Inputs({"w"})
    .Outputs({"qweight", "scales"})
    .Attrs({"num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(QuantizeInt8));

std::vector<paddle::Tensor> QuantizeInt4(const paddle::Tensor& w, int64_t group, const std::vector<float>& ratios,
                                         int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(w.dtype() == paddle::DataType::FLOAT32 && w.shape().size() == 2, "w must be float32 (N, K)");
  const int64_t N = w.shape()[0], K = w.shape()[1];
  PD_CHECK(group % 16 == 0 && K % group == 0, "group must be a multiple of 16 and divide K");
  PD_CHECK(!ratios.empty(), "at least one clip ratio is needed");
  auto q = paddle::empty({N, K / 2}, paddle::DataType::UINT8, paddle::CPUPlace());
  auto scales = paddle::empty({N, K / group}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  const float* src = w.data<float>();
  uint8_t* qp = q.data<uint8_t>();
  float* sp = scales.data<float>();
  pqv::advise_huge_pages(qp, N * K / 2);
  const bool avx512 = ex.avx512();
#pragma omp parallel for num_threads(ex.threads_for(4 * N * K))
  for (int64_t n = 0; n < N; ++n)
    quantize_row(src + n * K, K, group, ratios, qp + n * (K / 2), sp + n * (K / group), avx512);
  return {q, scales};
}

PD_BUILD_OP(pqv_quantize_int4)
    .Inputs({"w"})
    .Outputs({"qweight", "scales"})
    .Attrs({"group: int64_t", "ratios: std::vector<float>", "num_threads: int64_t", "work_per_thread: int64_t",
            "portable: bool"})
    .SetKernelFn(PD_KERNEL(QuantizeInt4));
