// Run-time choice among the per-instruction-set copies of the assignment
// kernels (lsa.cpp compiled with -mavx2, -mavx512*, and for baseline x86-64 /
// other targets). The wide copies roughly halve the time of the memory-light,
// compute-bound passes (warm start, row reductions, relaxations).
#include <stdexcept>

#include "lsa.h"

namespace fastot {
namespace {

bool cpu_runs(const std::string& isa) {
  if (isa == "generic") return true;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(FASTOT_HAVE_AVX2)
  // The wide copies are built with -mfma too (CMakeLists.txt): require it.
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if defined(FASTOT_HAVE_AVX512)
  if (isa == "avx512")
    return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#endif
#endif
  return false;
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const char* isa : {"avx512", "avx2", "generic"})
    if (cpu_runs(isa)) out.emplace_back(isa);
  return out;
}

template <typename T>
void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u, T* v,
                     int32_t* status, int n_threads, const std::string& isa) {
  static const std::string best = available_isas().front();
  const std::string& use = isa == "auto" ? best : isa;
  if (!cpu_runs(use))
    throw std::invalid_argument("isa must be 'auto' or one of this machine's available_isas(), got '" +
                                isa + "'");
#if defined(FASTOT_HAVE_AVX512)
  if (use == "avx512") return avx512::lsa_solve_batch<T>(C, B, n, m, col4row, u, v, status, n_threads);
#endif
#if defined(FASTOT_HAVE_AVX2)
  if (use == "avx2") return avx2::lsa_solve_batch<T>(C, B, n, m, col4row, u, v, status, n_threads);
#endif
  generic::lsa_solve_batch<T>(C, B, n, m, col4row, u, v, status, n_threads);
}

template void lsa_solve_batch<float>(const float*, int64_t, int64_t, int64_t, int64_t*, float*,
                                     float*, int32_t*, int, const std::string&);
template void lsa_solve_batch<double>(const double*, int64_t, int64_t, int64_t, int64_t*, double*,
                                      double*, int32_t*, int, const std::string&);

}  // namespace fastot
