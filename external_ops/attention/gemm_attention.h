// Attention of whole spans of tokens (each span attends to itself only) on oneDNN GEMMs: the vision
// towers' blocks (non-causal, pqv_block_attention) and long fresh prompts in the decoder (causal,
// GQA: pqv_paged_attention's gemm_sequences). See gemm_attention.cc. With `amx` (the wrapper's
// choice: ops/block_attention.py), non-causal bf16 spans with head dim <= 80 (a multiple of 16)
// run fused on AMX tiles instead (block_amx.cc).
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"

namespace pqv {

struct GemmAttention {
  const float* q;        // (tokens, Hq, D)
  const float* k;        // (tokens, Hkv, D); v the same
  const float* v;
  float* out;            // (tokens, Hq, D): the spans' rows are written, the others left alone
  int64_t tokens, Hq, Hkv, D;
  float scale;
  bool causal, bf16;     // bf16: q, the softmax numerators and the packed K / V in bf16
  bool amx;              // the fused AMX kernel instead of the GEMMs (non-causal bf16 only)
};

struct Span {
  int64_t start, n;      // tokens [start, start + n)
};

// Whether this build has the GEMM path (oneDNN headers were found).
bool gemm_attention_built();

// Whether this CPU and build can run `a` with amx = true: non-causal bf16, head dim a multiple of
// 16 up to 80, AMX-BF16 granted by the kernel, not the portable kernels.
bool amx_attention_supported(const GemmAttention& a, const Exec& ex);

// Multiply-adds of the spans' attention (for the thread count): 2 n^2 Hq D each, half if causal.
int64_t gemm_attention_macs(const GemmAttention& a, const std::vector<Span>& spans);

// out rows of every span, on ex.threads_for(gemm_attention_macs(a, spans)) threads. Throws
// without oneDNN, for bf16 without native bf16, and for amx where amx_attention_supported is false.
void gemm_attention(const GemmAttention& a, const std::vector<Span>& spans, const Exec& ex);

}  // namespace pqv
