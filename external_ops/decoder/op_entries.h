// The kernel functions of the single ops, for ops that chain them in C++ without a round trip
// through Python (decoder_layer_op.cc). Each is documented at its definition; each ends with the
// attrs num_threads, work_per_thread, portable (common.h: pqv::Exec).
#pragma once

#include <vector>

#include "paddle/extension.h"

std::vector<paddle::Tensor> RmsNorm(const paddle::Tensor& x, const paddle::Tensor& w, float eps, int64_t num_threads,
                                    int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> AddRmsNorm(const paddle::Tensor& x, const paddle::Tensor& residual,
                                       const paddle::Tensor& w, float eps, int64_t num_threads,
                                       int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> Swiglu(const paddle::Tensor& gate_up, int64_t num_threads, int64_t work_per_thread,
                                   bool portable);
std::vector<paddle::Tensor> RotaryQkv(const paddle::Tensor& qkv, const paddle::Tensor& cos,
                                      const paddle::Tensor& sin, int64_t num_heads, int64_t num_kv_heads,
                                      int64_t num_threads, int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> Linear(const paddle::Tensor& x, const paddle::Tensor& w,
                                   const paddle::optional<paddle::Tensor>& bias, bool exact, int64_t bf16_gemm_rows,
                                   int64_t num_threads, int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> WeightOnlyInt8(const paddle::Tensor& x, const paddle::Tensor& qweight,
                                           const paddle::Tensor& scales,
                                           const paddle::optional<paddle::Tensor>& bias, bool exact,
                                           bool bf16_prefill, bool int8_prefill_tiles, int64_t vnni_gemm_rows,
                                           int64_t num_threads, int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> WeightOnlyInt4(const paddle::Tensor& x, const paddle::Tensor& qweight,
                                           const paddle::Tensor& scales,
                                           const paddle::optional<paddle::Tensor>& bias, int64_t group_size,
                                           bool exact, bool bf16_prefill, int64_t vnni_gemm_rows,
                                           int64_t num_threads, int64_t work_per_thread, bool portable);
std::vector<paddle::Tensor> PagedAttention(const paddle::Tensor& q, const paddle::Tensor& k,
                                           const paddle::Tensor& v, paddle::Tensor& k_cache,
                                           paddle::Tensor& v_cache, const paddle::Tensor& slot_mapping,
                                           const paddle::Tensor& block_tables, const paddle::Tensor& token_seq,
                                           const paddle::Tensor& token_ctx, float scale, int64_t block_size,
                                           const std::vector<int64_t>& gemm_sequences, int64_t num_threads,
                                           int64_t work_per_thread, bool portable);
