// The paged attention kernel's inner loops (attention_kernels.h: AttnKernelsT) for any x86-64 CPU
// and any head dim; they ignore the prefetch hint. K / V rows: float, or bf16 bits widened.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "attention/attention_kernels.h"

namespace pqv {

static float row_value(const float* row, int64_t d) { return row[d]; }
static float row_value(const uint16_t* row, int64_t d) {
  const uint32_t u = uint32_t(row[d]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T>
static void scores_portable(const float* q, int64_t R, const T* const* k, int64_t n, int64_t D, float* s,
                            int64_t lds, const T* const*) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < n; ++j) {
      float acc = 0.f;
      for (int64_t d = 0; d < D; ++d) acc += q[r * D + d] * row_value(k[j], d);
      s[r * lds + j] = acc;
    }
}

template <typename T>
static void accumulate_portable(float* acc, const float* alpha, const float* p, int64_t pr, int64_t pj, int64_t R,
                                const T* const* v, int64_t n, int64_t D, const T* const*) {
  for (int64_t r = 0; r < R; ++r) {
    float* a = acc + r * D;
    for (int64_t d = 0; d < D; ++d) a[d] *= alpha[r];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t d = 0; d < D; ++d) a[d] += p[r * pr + j * pj] * row_value(v[j], d);
  }
}

template <typename T>
static void scores_t_portable(const float* qt, int64_t Rp, const T* const* k, int64_t n, int64_t D, float* st) {
  for (int64_t j = 0; j < n; ++j) {
    float* row = st + j * Rp;
    std::fill(row, row + Rp, 0.f);
    for (int64_t d = 0; d < D; ++d)
      for (int64_t r = 0; r < Rp; ++r) row[r] += row_value(k[j], d) * qt[d * Rp + r];
  }
}

static void softmax_t_portable(float* st, int64_t n, int64_t Rp, const int32_t* valid, float* m, float* l,
                               float* alpha) {
  for (int64_t r = 0; r < Rp; ++r) {
    float new_m = m[r], sum = 0.f;
    for (int64_t j = 0; j < valid[r]; ++j) new_m = std::max(new_m, st[j * Rp + r]);
    const float base = std::isinf(new_m) ? 0.f : new_m;          // nothing seen yet: keep exp finite
    for (int64_t j = 0; j < n; ++j) sum += (st[j * Rp + r] = j < valid[r] ? std::exp(st[j * Rp + r] - base) : 0.f);
    alpha[r] = std::exp(m[r] - base);
    l[r] = l[r] * alpha[r] + sum;
    m[r] = new_m;
  }
}

static float softmax_step_portable(float* s, int64_t n, float* m, float* l) {
  float new_m = *m, sum = 0.f;
  for (int64_t j = 0; j < n; ++j) new_m = std::max(new_m, s[j]);
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - new_m));
  const float alpha = std::exp(*m - new_m);
  *l = *l * alpha + sum;
  *m = new_m;
  return alpha;
}

const AttnKernels kAttnPortable = {scores_portable<float>, softmax_step_portable, scores_t_portable<float>,
                                   softmax_t_portable, accumulate_portable<float>};
const AttnKernelsBf16 kAttnPortableBf16 = {scores_portable<uint16_t>, softmax_step_portable,
                                           scores_t_portable<uint16_t>, softmax_t_portable,
                                           accumulate_portable<uint16_t>};

}  // namespace pqv
