// pqv_weight_only_int8 / int4: y (M, N) = x (M, K) @ dequant(qweight)^T + bias.
// Decode (few rows): a GEMV that streams the quantized weights once (memory-bound, gemv/). By
// default it quantizes x per block to int8 and uses AVX512-VNNI (with many rows: a register-blocked
// kernel that reads the weights once for all of them, below vnni_gemm_rows); exact=true keeps x in fp32
// (bit-for-bit the dequantized math up to summation order, but compute-bound below DRAM speed).
// Prefill (many rows, oneDNN present): dequantize about 2 MB of weight rows at a time (a tile that
// stays in the L2) and run a oneDNN GEMM on each tile. bf16_prefill and a CPU with native bf16:
// x and the tile in bf16 (oneDNN's AMX / AVX512-BF16 GEMM, products summed in fp32); otherwise fp32.
// int8 in bf16 skips the tiles where oneDNN converts int8 weights itself (int8_prefill), unless
// the attr int8_prefill_tiles (PADDLE_QWENVL_INT8_PREFILL=tiles) asks for the tiles.
// Attrs: [group_size,] exact, bf16_prefill, [int8_prefill_tiles,] vnni_gemm_rows, then num_threads,
// work_per_thread, portable (common.h: pqv::Exec).
#include <vector>

#include "common.h"
#include "gemm/dequant_tiles.h"
#include "gemm/dnnl_gemm.h"
#include "gemm/tile_gemm.h"
#include "gemv/gemv.h"

namespace {

constexpr int64_t kPrefillRows = 16;   // from this many activation rows on, dequantize + GEMM
// x quantized (VNNI): the attr vnni_gemm_rows says where the GEMM takes over; below it, from this
// many rows the register-blocked kernels (gemv/weight_only_rows_vnni.cc) run, which read the weights
// from DRAM slower than the row kernels with 2-6 rows and matched them at ~8 (Zen 4, 2 threads).
constexpr int64_t kBlockedRows = 8;

// x quantized per block (64 for int8 weights, the group for int4) for the VNNI kernels
// (gemv/weight_only_vnni.cc).
struct QuantXBuffers {
  std::vector<int8_t> q;
  std::vector<float> scale, off, off_total;
  int64_t block;
  QuantXBuffers(const float* x, int64_t M, int64_t K, int64_t block, bool permute, int nt)
      : q(M * K), scale(M * K / block), off(M * K / block), off_total(M), block(block) {
    const int64_t B = K / block;
    pqv::parallel_rows(M, M >= kBlockedRows ? nt : 1, [&](int64_t b, int64_t e) {
      pqv::quantize_x_blocks(x + b * K, e - b, K, block, permute, q.data() + b * K, scale.data() + b * B,
                             off.data() + b * B, off_total.data() + b);
    });
  }
  pqv::QuantX view() const { return {q.data(), scale.data(), off.data(), off_total.data(), block}; }
};

const float* bias_ptr(const paddle::optional<paddle::Tensor>& bias) {
  return bias ? bias->data<float>() : nullptr;
}

void check_x(const paddle::Tensor& x, int64_t K) {
  PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, "x must be float32 (the wrapper casts bf16)");
  PD_CHECK(x.shape().size() == 2 && x.shape()[1] == K, "x must be (M, K) with K = weight in_features");
}

// Prefill of int8 weights: the GEMM sees q itself (exact in bf16 too) and its post-ops make
// y = y * scale[n] + bias[n] (a separate pass over y afterwards read and wrote it from DRAM).
// bf16: oneDNN reads the int8 weights and converts them inside the GEMM (weight decompression),
// where oneDNN has that; else, and in fp32, tiles of q are written first. On a Xeon
// with AMX oneDNN's conversion ran 512x2048x11008 at 1077-1135 GFLOP/s through the op
// against 868-989 with tiles; on AMD Zen 4 it was the slower.
// tiles: dequantized tiles even where oneDNN could convert the int8 weights itself.
void int8_prefill(const pqv::Int8Gemv& p, bool bf16, bool tiles, int nt) {
  const int64_t M = p.M, N = p.N, K = p.K;
  if (bf16) {
    const std::vector<uint16_t> xb = pqv::to_bf16(p.x, M * K, nt);
    const pqv::Gemm g{xb.data(), p.w, p.bias, p.y, pqv::Dt::bf16, pqv::Dt::f32, M, N, K, N, p.scales, true};
    if (!tiles && pqv::dnnl_gemm(g, nt)) return;
    pqv::tile_gemm(xb.data(), p.y, p.bias, p.scales, M, N, K, nt, [&](int64_t n0, int64_t b, int64_t e, uint16_t* tile) {
      for (int64_t r = b; r < e; ++r) pqv::int8_row_bf16(p.w + (n0 + r) * K, K, tile + r * K);
    });
  } else {
    pqv::tile_gemm(p.x, p.y, p.bias, p.scales, M, N, K, nt, [&](int64_t n0, int64_t b, int64_t e, float* tile) {
      for (int64_t r = b; r < e; ++r)
        for (int64_t k = 0; k < K; ++k) tile[r * K + k] = p.w[(n0 + r) * K + k];
    });
  }
}

void int4_prefill(const pqv::Int4Gemv& p, bool bf16, int nt) {
  const int64_t M = p.M, N = p.N, K = p.K, G = K / p.group;
  if (bf16) {
    const std::vector<uint16_t> xb = pqv::to_bf16(p.x, M * K, nt);
    pqv::tile_gemm(xb.data(), p.y, p.bias, nullptr, M, N, K, nt, [&](int64_t n0, int64_t b, int64_t e, uint16_t* tile) {
      for (int64_t r = b; r < e; ++r)
        pqv::int4_row_bf16(p.w + (n0 + r) * (K / 2), p.scales + (n0 + r) * G, K, p.group, tile + r * K);
    });
    return;
  }
  pqv::tile_gemm(p.x, p.y, p.bias, nullptr, M, N, K, nt, [&](int64_t n0, int64_t b, int64_t e, float* tile) {
    for (int64_t r = b; r < e; ++r) {
      const uint8_t* w = p.w + (n0 + r) * (K / 2);
      const float* s = p.scales + (n0 + r) * G;
      for (int64_t j = 0; j < K / 2; ++j) {
        tile[r * K + 2 * j] = ((w[j] & 0x0F) - 8) * s[2 * j / p.group];
        tile[r * K + 2 * j + 1] = ((w[j] >> 4) - 8) * s[2 * j / p.group];
      }
    }
  });
}

}  // namespace

std::vector<paddle::Tensor> WeightOnlyInt8(const paddle::Tensor& x, const paddle::Tensor& qweight,
                                           const paddle::Tensor& scales,
                                           const paddle::optional<paddle::Tensor>& bias, bool exact,
                                           bool bf16_prefill, bool int8_prefill_tiles, int64_t vnni_gemm_rows,
                                           int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  const int64_t N = qweight.shape()[0], K = qweight.shape()[1], M = x.shape()[0];
  check_x(x, K);
  PD_CHECK(qweight.dtype() == paddle::DataType::INT8, "qweight must be int8 (N, K)");
  auto y = paddle::empty({M, N}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  pqv::Int8Gemv p{x.data<float>(), qweight.data<int8_t>(), scales.data<float>(), bias_ptr(bias), y.data<float>(), M, N, K};
  const int nt = ex.threads_for(M * N * K);   // >= the weight bytes
  const bool vnni = ex.avx512() && !exact && K % 64 == 0;
  if (M >= (vnni ? vnni_gemm_rows : kPrefillRows) && pqv::dnnl_available()) {
    int8_prefill(p, bf16_prefill && ex.fast_bf16(), int8_prefill_tiles, nt);
  } else if (vnni) {
    QuantXBuffers xq(p.x, M, K, 64, false, nt);
    const auto kernel = M >= kBlockedRows ? pqv::int8_rows_vnni : pqv::int8_gemv_vnni;
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { kernel(p, xq.view(), b, e); });
  } else if (ex.avx512()) {
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::int8_gemv_avx512(p, b, e); });
  } else {
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::int8_gemv_portable(p, b, e); });
  }
  return {y};
}

std::vector<paddle::Tensor> WeightOnlyInt4(const paddle::Tensor& x, const paddle::Tensor& qweight,
                                           const paddle::Tensor& scales,
                                           const paddle::optional<paddle::Tensor>& bias, int64_t group_size,
                                           bool exact, bool bf16_prefill, int64_t vnni_gemm_rows,
                                           int64_t num_threads, int64_t work_per_thread, bool portable) {
  const pqv::Exec ex{num_threads, work_per_thread, portable};
  const int64_t N = qweight.shape()[0], K = qweight.shape()[1] * 2, M = x.shape()[0];
  check_x(x, K);
  PD_CHECK(qweight.dtype() == paddle::DataType::UINT8, "int4 qweight must be uint8 (N, K/2)");
  PD_CHECK(group_size % 64 == 0 && K % group_size == 0, "group_size must be a multiple of 64 dividing K");
  auto y = paddle::empty({M, N}, paddle::DataType::FLOAT32, paddle::CPUPlace());
  pqv::Int4Gemv p{x.data<float>(), qweight.data<uint8_t>(), scales.data<float>(), bias_ptr(bias), y.data<float>(),
                  M, N, K, group_size};
  const int nt = ex.threads_for(M * N * K);
  const int64_t G = K / group_size;
  const bool vnni = ex.avx512() && !exact;
  if (M >= (vnni ? vnni_gemm_rows : kPrefillRows) && pqv::dnnl_available()) {
    int4_prefill(p, bf16_prefill && ex.fast_bf16(), nt);
  } else if (vnni) {
    QuantXBuffers xq(p.x, M, K, group_size, true, nt);
    const auto kernel = M >= kBlockedRows ? pqv::int4_rows_vnni : pqv::int4_gemv_vnni;
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { kernel(p, xq.view(), b, e); });
  } else if (ex.avx512()) {
    std::vector<float> xp(M * K), xsum(M * G);
    pqv::int4_prepare(p.x, M, K, group_size, xp.data(), xsum.data());
    pqv::Int4Gemv q = p;
    q.x = xp.data();
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::int4_gemv_avx512(q, xsum.data(), b, e); });
  } else {
    pqv::parallel_rows(N, nt, [&](int64_t b, int64_t e) { pqv::int4_gemv_portable(p, b, e); });
  }
  return {y};
}

std::vector<std::vector<int64_t>> WeightOnlyShape(const std::vector<int64_t>& x, const std::vector<int64_t>& w,
                                                  const std::vector<int64_t>&,
                                                  const paddle::optional<std::vector<int64_t>>&) {
  return {{x[0], w[0]}};
}

std::vector<paddle::DataType> WeightOnlyDtype(const paddle::DataType&, const paddle::DataType&,
                                              const paddle::DataType&, const paddle::optional<paddle::DataType>&) {
  return {paddle::DataType::FLOAT32};
}

PD_BUILD_OP(pqv_weight_only_int8)
    .Inputs({"x", "qweight", "scales", paddle::Optional("bias")})
    .Outputs({"out"})
    .Attrs({"exact: bool", "bf16_prefill: bool", "int8_prefill_tiles: bool", "vnni_gemm_rows: int64_t",
            "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(WeightOnlyInt8))
    .SetInferShapeFn(PD_INFER_SHAPE(WeightOnlyShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WeightOnlyDtype));

PD_BUILD_OP(pqv_weight_only_int4)
    .Inputs({"x", "qweight", "scales", paddle::Optional("bias")})
    .Outputs({"out"})
    .Attrs({"group_size: int64_t", "exact: bool", "bf16_prefill: bool", "vnni_gemm_rows: int64_t",
            "num_threads: int64_t", "work_per_thread: int64_t", "portable: bool"})
    .SetKernelFn(PD_KERNEL(WeightOnlyInt4))
    .SetInferShapeFn(PD_INFER_SHAPE(WeightOnlyShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(WeightOnlyDtype));
