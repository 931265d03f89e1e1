// Attention of whole spans of tokens (each span attends to itself only) on oneDNN GEMMs: the vision
// towers' blocks (non-causal, pqv_block_attention) and fresh prompts in the decoder (causal, GQA:
// pqv_paged_attention's prefill of a sequence with nothing cached before it). See gemm_attention.cc.
// Non-causal bf16 with head dim <= 80 (the vision towers') runs fused on AMX tiles instead where
// the CPU has them (kernels_amx.cc); PADDLE_QWENVL_AMX_ATTENTION=0 keeps the GEMMs.
#pragma once

#include <cstdint>
#include <vector>

namespace pqv {

struct GemmAttention {
  const float* q;        // (tokens, Hq, D)
  const float* k;        // (tokens, Hkv, D); v the same
  const float* v;
  float* out;            // (tokens, Hq, D): the spans' rows are written, the others left alone
  int64_t tokens, Hq, Hkv, D;
  float scale;
  bool causal, bf16;     // bf16: q, the softmax numerators and the packed K / V in bf16
};

struct Span {
  int64_t start, n;      // tokens [start, start + n)
};

// Whether this build has the GEMM path (oneDNN headers were found).
bool gemm_attention_built();

// Multiply-adds of the spans' attention (for the thread count): 2 n^2 Hq D each, half if causal.
int64_t gemm_attention_macs(const GemmAttention& a, const std::vector<Span>& spans);

// out rows of every span; num_threads as pqv::threads (<= 0: all). Throws without oneDNN.
void gemm_attention(const GemmAttention& a, const std::vector<Span>& spans, int nt);

}  // namespace pqv
