// Checkpoint loading: pqv_bf16_to_float32(x bfloat16, any shape) -> float32, the cast a float32
// model needs for the published bf16 checkpoints. Paddle's cast runs on one thread and its output
// is fresh memory, so most of its time went to 4 KB page faults (a 2B model: 8.8 GB of float32,
// ~4.4 s). Here the output is advised to transparent huge pages before it is first written (the
// kernel's THP mode is "madvise" here) and the work is split over the threads.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

std::vector<paddle::Tensor> Bf16ToFloat32(const paddle::Tensor& x, int64_t num_threads) {
  PD_CHECK(x.dtype() == paddle::DataType::BFLOAT16, "pqv_bf16_to_float32 takes a bfloat16 tensor");
  const int64_t n = x.numel();
  auto out = paddle::empty(x.shape(), paddle::DataType::FLOAT32, paddle::CPUPlace());
  if (n == 0) return {out};
  float* o = out.data<float>();
  pqv::advise_huge_pages(o, n * 4);
  const uint16_t* in = reinterpret_cast<const uint16_t*>(x.data<paddle::bfloat16>());
  constexpr int64_t kPiece = 1 << 18;                           // elements per work piece
  const int64_t pieces = (n + kPiece - 1) / kPiece;
#pragma omp parallel for num_threads(pqv::threads_for(num_threads, 6 * n)) schedule(static)
  for (int64_t i = 0; i < pieces; ++i) {
    const int64_t end = std::min(n, (i + 1) * kPiece);
    for (int64_t j = i * kPiece; j < end; ++j) {
      const uint32_t u = uint32_t(in[j]) << 16;                 // bf16 is the top half of a float32
      std::memcpy(o + j, &u, 4);
    }
  }
  return {out};
}

std::vector<std::vector<int64_t>> Bf16ToFloat32Shape(const std::vector<int64_t>& x) { return {x}; }
std::vector<paddle::DataType> Bf16ToFloat32Dtype(const paddle::DataType&) { return {paddle::DataType::FLOAT32}; }

PD_BUILD_OP(pqv_bf16_to_float32)
    .Inputs({"x"})
    .Outputs({"out"})
    .Attrs({"num_threads: int64_t"})
    .SetKernelFn(PD_KERNEL(Bf16ToFloat32))
    .SetInferShapeFn(PD_INFER_SHAPE(Bf16ToFloat32Shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(Bf16ToFloat32Dtype));
