// Checkpoint loading: pqv_bf16_to_float32(parts: bfloat16 tensors) -> float32, the parts joined
// along axis 0: the cast a float32 model needs for the published bf16 checkpoints. Paddle's cast
// runs on one thread and its output is fresh memory, so most of its time went to 4 KB page faults
// (a 2B model: 8.8 GB of float32, ~4.4 s). Here the output is advised to transparent huge pages before it is first written (the
// kernel's THP mode is "madvise" here) and the work is split over the threads.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

// parts: bfloat16 tensors of equal trailing dims, joined along axis 0 (a checkpoint's q/k/v or
// gate/up pieces of one fused parameter) as they are cast: paddle.concat first wrote the joined
// bf16 copy on one thread (1.0 of a 2B model's ~4 s float32 load).
// Attrs: num_threads, work_per_thread, portable (common.h: pqv::Exec; no ISA-specific loops here).
std::vector<paddle::Tensor> Bf16ToFloat32(const std::vector<paddle::Tensor>& parts, int64_t num_threads,
                                          int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  PD_CHECK(!parts.empty(), "pqv_bf16_to_float32 takes at least one tensor");
  std::vector<int64_t> shape = parts[0].shape();
  int64_t n = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const paddle::Tensor& x = parts[i];
    PD_CHECK(x.dtype() == paddle::DataType::BFLOAT16, "pqv_bf16_to_float32 takes bfloat16 tensors");
    if (i > 0) {
      PD_CHECK(!shape.empty() && x.shape().size() == shape.size() &&
                   std::equal(shape.begin() + 1, shape.end(), x.shape().begin() + 1),
               "pqv_bf16_to_float32 joins parts along axis 0: their other dims must agree");
      shape[0] += x.shape()[0];
    }
    n += x.numel();
  }
  auto out = paddle::empty(shape, paddle::DataType::FLOAT32, paddle::CPUPlace());
  if (n == 0) return {out};
  float* o = out.data<float>();
  pqv::advise_huge_pages(o, n * 4);
  std::vector<const uint16_t*> in;                              // part i's elements start at begin[i]
  std::vector<int64_t> begin{0};
  for (const paddle::Tensor& x : parts) {
    in.push_back(reinterpret_cast<const uint16_t*>(x.data<paddle::bfloat16>()));
    begin.push_back(begin.back() + x.numel());
  }
  constexpr int64_t kPiece = 1 << 18;                           // elements per work piece
  const int64_t pieces = (n + kPiece - 1) / kPiece;
#pragma omp parallel for num_threads(ex.threads_for(6 * n)) schedule(static)
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t end = std::min(n, (i + 1) * kPiece);
    size_t part = std::upper_bound(begin.begin(), begin.end(), i * kPiece) - begin.begin() - 1;
    for (int64_t j = i * kPiece; j < end;) {
      while (j >= begin[part + 1]) ++part;                      // skips empty parts too
      const int64_t stop = std::min(end, begin[part + 1]);
      const uint16_t* src = in[part] - begin[part];
      for (; j < stop; ++j) {
        const uint32_t u = uint32_t(src[j]) << 16;              // bf16 is the top half of a float32
        std::memcpy(o + j, &u, 4);
      }
    }
  }
  return {out};
}

std::vector<std::vector<int64_t>> Bf16ToFloat32Shape(const std::vector<std::vector<int64_t>>& parts) {
  std::vector<int64_t> shape = parts.at(0);
  for (size_t i = 1; i < parts.size(); ++i) shape[0] += parts[i][0];
  return {shape};
}
std::vector<paddle::DataType> Bf16ToFloat32Dtype(const std::vector<paddle::DataType>&) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(pqv_bf16_to_float32)
    .Inputs({paddle::Vec("parts")})
    .Outputs({"out"})
    .Attrs({"num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(Bf16ToFloat32))
    .SetInferShapeFn(PD_INFER_SHAPE(Bf16ToFloat32Shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Bf16ToFloat32Dtype));
