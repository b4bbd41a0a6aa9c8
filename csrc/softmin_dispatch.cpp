// Run-time choice among the per-instruction-set copies of the log-sum-exp
// kernels (softmin.cpp), the same names as the assignment kernels' copies
// (available_isas(), lsa_dispatch.cpp). softmin's AVX2 and AVX-512 copies are
// also built with -mfma, so they additionally need a CPU with FMA (every CPU
// with AVX2 has it in practice).
#include <algorithm>
#include <stdexcept>

#include "lsa.h"
#include "softmin.h"

namespace fastot {
namespace {

bool softmin_runs(const std::string& isa) {
  const std::vector<std::string> have = available_isas();
  if (std::find(have.begin(), have.end(), isa) == have.end()) return false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (isa == "avx2" || isa == "avx512") return __builtin_cpu_supports("fma");
#endif
  return true;
}

}  // namespace

std::string softmin_isa(const std::string& isa) {
  if (isa == "auto") {
    static const std::string best = [] {
      for (const std::string& a : available_isas())
        if (softmin_runs(a)) return a;
      return std::string("generic");
    }();
    return best;
  }
  if (!softmin_runs(isa))
    throw std::invalid_argument("isa must be 'auto' or one of this machine's available_isas(), got '" + isa +
                                "'");
  return isa;
}

#if defined(FASTOT_HAVE_AVX512)
#define FASTOT_CALL_AVX512(fn, ...) \
  if (use == "avx512") return avx512::fn(__VA_ARGS__);
#else
#define FASTOT_CALL_AVX512(fn, ...)
#endif
#if defined(FASTOT_HAVE_AVX2)
#define FASTOT_CALL_AVX2(fn, ...) \
  if (use == "avx2") return avx2::fn(__VA_ARGS__);
#else
#define FASTOT_CALL_AVX2(fn, ...)
#endif
#define FASTOT_SOFTMIN_DISPATCH(fn, ...)     \
  const std::string use = softmin_isa(isa);  \
  FASTOT_CALL_AVX512(fn, __VA_ARGS__)        \
  FASTOT_CALL_AVX2(fn, __VA_ARGS__)          \
  return generic::fn(__VA_ARGS__);

template <typename T>
void lse_dense(const T* C, const T* h, const T* scale, int64_t B, int64_t n, int64_t m, bool transpose, T* out,
               int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(lse_dense<T>, C, h, scale, B, n, m, transpose, out, n_threads)
}

template <typename T>
void lse_sqeuclidean(const T* x, const T* y, const T* h, const T* scale, int64_t B, int64_t n, int64_t m,
                     int64_t d, T* out, int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(lse_sqeuclidean<T>, x, y, h, scale, B, n, m, d, out, n_threads)
}

template <typename T>
void sinkhorn_step_dense(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* S, T* Tout,
                         int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(sinkhorn_step_dense<T>, C, a, B, n, m, S, Tout, n_threads)
}

template <typename T>
void sinkhorn_step_sqeuclidean(const T* x, const T* y, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m,
                               int64_t d, T* S, T* Tout, int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(sinkhorn_step_sqeuclidean<T>, x, y, a, B, n, m, d, S, Tout, n_threads)
}

template <typename T>
void plan_dot_dense(const T* C, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n, int64_t m, T* out,
                    int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(plan_dot_dense<T>, C, hr, hc, scale, B, n, m, out, n_threads)
}

template <typename T>
void plan_dot_sqeuclidean(const T* x, const T* y, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n,
                          int64_t m, int64_t d, T* out, int n_threads, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(plan_dot_sqeuclidean<T>, x, y, hr, hc, scale, B, n, m, d, out, n_threads)
}

template <typename T>
void exp_approx(const T* x, int64_t count, T* out, bool full_range, const std::string& isa) {
  FASTOT_SOFTMIN_DISPATCH(exp_approx<T>, x, count, out, full_range)
}

#undef FASTOT_SOFTMIN_DISPATCH
#undef FASTOT_CALL_AVX2
#undef FASTOT_CALL_AVX512

template void lse_dense<float>(const float*, const float*, const float*, int64_t, int64_t, int64_t, bool, float*,
                               int, const std::string&);
template void lse_dense<double>(const double*, const double*, const double*, int64_t, int64_t, int64_t, bool,
                                double*, int, const std::string&);
template void lse_sqeuclidean<float>(const float*, const float*, const float*, const float*, int64_t, int64_t,
                                     int64_t, int64_t, float*, int, const std::string&);
template void lse_sqeuclidean<double>(const double*, const double*, const double*, const double*, int64_t,
                                      int64_t, int64_t, int64_t, double*, int, const std::string&);
template void sinkhorn_step_dense<float>(const float*, const StepArgs<float>&, int64_t, int64_t, int64_t, float*,
                                         float*, int, const std::string&);
template void sinkhorn_step_dense<double>(const double*, const StepArgs<double>&, int64_t, int64_t, int64_t,
                                          double*, double*, int, const std::string&);
template void sinkhorn_step_sqeuclidean<float>(const float*, const float*, const StepArgs<float>&, int64_t, int64_t,
                                               int64_t, int64_t, float*, float*, int, const std::string&);
template void sinkhorn_step_sqeuclidean<double>(const double*, const double*, const StepArgs<double>&, int64_t,
                                                int64_t, int64_t, int64_t, double*, double*, int,
                                                const std::string&);
template void plan_dot_dense<float>(const float*, const float*, const float*, const float*, int64_t, int64_t,
                                    int64_t, float*, int, const std::string&);
template void plan_dot_dense<double>(const double*, const double*, const double*, const double*, int64_t, int64_t,
                                     int64_t, double*, int, const std::string&);
template void plan_dot_sqeuclidean<float>(const float*, const float*, const float*, const float*, const float*,
                                          int64_t, int64_t, int64_t, int64_t, float*, int, const std::string&);
template void plan_dot_sqeuclidean<double>(const double*, const double*, const double*, const double*,
                                           const double*, int64_t, int64_t, int64_t, int64_t, double*, int,
                                           const std::string&);
template void exp_approx<float>(const float*, int64_t, float*, bool, const std::string&);
template void exp_approx<double>(const double*, int64_t, double*, bool, const std::string&);

}  // namespace fastot
