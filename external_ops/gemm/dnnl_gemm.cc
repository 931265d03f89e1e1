// oneDNN matmul with a small primitive cache keyed by shape and dtypes.
#include "gemm/dnnl_gemm.h"

#include <omp.h>

#ifdef PQV_WITH_DNNL
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "paddle/extension.h"
#endif

namespace pqv {

#ifndef PQV_WITH_DNNL
bool dnnl_available() { return false; }
bool dnnl_gemm(const Gemm&, int) { return false; }
#else
namespace {
using dnnl::memory;
using tag = memory::format_tag;

memory::data_type to_dnnl(Dt d) { return d == Dt::f32 ? memory::data_type::f32 : memory::data_type::bf16; }

dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

std::string key_of(const Gemm& g) {
  return std::to_string(g.M) + "," + std::to_string(g.N) + "," + std::to_string(g.K) + "," +
         std::to_string(g.ldy) + "," + std::to_string(int(g.in_dt)) + std::to_string(int(g.y_dt)) +
         (g.bias ? "b" : "") + (g.col_scale ? "s" : "") + (g.w_int8 ? "i" : "");
}

memory::desc row_desc(int64_t n) { return memory::desc({1, n}, memory::data_type::f32, tag::ab); }

// (N, K) row-major == (K, N) "ba"
memory::desc weights_desc(const Gemm& g) {
  return memory::desc({g.K, g.N}, g.w_int8 ? memory::data_type::s8 : to_dnnl(g.in_dt), tag::ba);
}

dnnl::matmul make_matmul(const Gemm& g) {
  memory::desc a({g.M, g.K}, to_dnnl(g.in_dt), tag::ab);
  memory::desc y({g.M, g.N}, to_dnnl(g.y_dt), memory::dims{g.ldy, 1});
  dnnl::primitive_attr attr;
  // int8 weights converted to the bf16 of the math (apply_to_int: to integer weights too)
  if (g.w_int8) attr.set_fpmath_mode(dnnl::fpmath_mode::bf16, true);
  if (g.col_scale) {      // oneDNN adds a bias before post-ops, so here both are post-ops: * s, + b
    dnnl::post_ops ops;
    ops.append_binary(dnnl::algorithm::binary_mul, row_desc(g.N));
    if (g.bias) ops.append_binary(dnnl::algorithm::binary_add, row_desc(g.N));
    attr.set_post_ops(ops);
    return dnnl::matmul(dnnl::matmul::primitive_desc(cpu_engine(), a, weights_desc(g), y, attr));
  }
  if (!g.bias) return dnnl::matmul(dnnl::matmul::primitive_desc(cpu_engine(), a, weights_desc(g), y, attr));
  return dnnl::matmul(dnnl::matmul::primitive_desc(cpu_engine(), a, weights_desc(g), row_desc(g.N), y, attr));
}

// Creating a primitive costs ~0.1-1 ms; prefill lengths vary, so the cache is bounded.
dnnl::matmul cached_matmul(const Gemm& g, int num_threads) {
  static std::mutex mu;
  static std::unordered_map<std::string, dnnl::matmul> cache;
  std::lock_guard<std::mutex> lock(mu);
  const std::string k = key_of(g) + "/" + std::to_string(num_threads);
  auto it = cache.find(k);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 512) cache.clear();
  return cache.emplace(k, make_matmul(g)).first->second;
}
}  // namespace

bool dnnl_available() { return true; }

bool dnnl_gemm(const Gemm& g, int num_threads) {
  pqv::OmpThreads scope(num_threads);
  static std::atomic<bool> no_int8_weights{false};   // learned once: creating a primitive costs ~1 ms
  if (g.w_int8 && no_int8_weights) return false;
  dnnl::matmul mm;
  try {
    mm = cached_matmul(g, num_threads);
  } catch (const dnnl::error& e) {
    if (g.w_int8) {   // no int8 weight decompression on this CPU / oneDNN: the caller dequantizes
      no_int8_weights = true;
      return false;
    }
    PD_THROW("oneDNN has no matmul for M,N,K,ldy,dtypes,bias = ", key_of(g), ": ", e.what());
  }
  dnnl::engine& eng = cpu_engine();
  memory a({{g.M, g.K}, to_dnnl(g.in_dt), tag::ab}, eng, const_cast<void*>(g.a));
  memory w(weights_desc(g), eng, const_cast<void*>(g.w));
  memory y({{g.M, g.N}, to_dnnl(g.y_dt), memory::dims{g.ldy, 1}}, eng, g.y);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}};
  auto row = [&](const float* p) { return memory(row_desc(g.N), eng, const_cast<float*>(p)); };
  if (g.col_scale) {
    args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = row(g.col_scale);
    if (g.bias) args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1] = row(g.bias);
  } else if (g.bias) {
    args[DNNL_ARG_BIAS] = row(g.bias);
  }
  dnnl::stream s(eng);
  mm.execute(s, args);
  s.wait();
  return true;
}
#endif

}  // namespace pqv
