// Weight-only prefill tiles in bf16 (dequant_tiles.h) for oneDNN's bf16 GEMM (AMX or AVX512-BF16).
// Compiled for AVX512-BF16 by the pragma; callers check pqv::Exec::fast_bf16() first.
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,avx2")
#include <immintrin.h>

#include "gemm/dequant_tiles.h"

namespace pqv {

void int8_row_bf16(const int8_t* w, int64_t K, uint16_t* out) {
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(f)));
  }
  for (; k < K; ++k) {                                      // |q| <= 128: the top 16 bits are exact
    const float f = w[k];
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    out[k] = static_cast<uint16_t>(u >> 16);
  }
}

// 16 bytes = 32 nibbles -> k order: lane j of the u32 expansion holds byte j; its low nibble is
// k = 2j and its high nibble k = 2j + 1, which as two 16-bit halves are already in k order.
void int4_row_bf16(const uint8_t* w, const float* scales, int64_t K, int64_t group, uint16_t* out) {
  const __m512i lo4 = _mm512_set1_epi32(0x0F), eight = _mm512_set1_epi16(8);
  for (int64_t k = 0; k < K; k += 32) {                     // group % 64 == 0: one scale per 32
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k / 2)));
    const __m512i pairs = _mm512_sub_epi16(
        _mm512_or_si512(_mm512_and_si512(b, lo4), _mm512_slli_epi32(_mm512_srli_epi32(b, 4), 16)), eight);
    const __m512 s = _mm512_set1_ps(scales[k / group]);
    const __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(pairs))), s);
    const __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(pairs, 1))), s);
    _mm512_storeu_si512(out + k, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(f1, f0)));
  }
}

}  // namespace pqv
