// Log-sum-exp reductions ("softmin", the c-transform of log-domain Sinkhorn),
// torch-free, batched, float and double.
//
//   lse_dense, transpose = false:  out[b, i] = log sum_j exp(h[b, j] - scale[b] * C[b, i, j])
//   lse_dense, transpose = true:   out[b, j] = log sum_i exp(h[b, i] - scale[b] * C[b, i, j])
//   lse_sqeuclidean:               out[b, i] = log sum_j exp(h[b, j] - scale[b] * |x[b, i] - y[b, j]|^2)
//
// Shapes (all C-contiguous): C (B, n, m); h (B, m), out (B, n) for transpose =
// false; h (B, n), out (B, m) for transpose = true; x (B, n, d), y (B, m, d),
// h (B, m), out (B, n); scale (B,). lse_sqeuclidean never forms the n x m cost:
// it computes |x_i|^2 + |y_j|^2 - 2 <x_i, y_j> (clamped at 0) tile by tile. Its
// column direction is the same call with x and y swapped.
//
// Semantics: C = +inf is a forbidden pair and h = -inf a zero weight (the term
// is exactly 0); a sum with no nonzero term gives -inf (also m = 0, or n = 0 for
// the transpose). scale must be > 0 and finite (the bindings check it). NaN in
// C, x, y or h, C = -inf, h = +inf or non-finite x, y give NaN in the affected
// outputs (not checked here: the solver validates its inputs once).
//
// Numerics: each sum is taken relative to its running maximum (two passes over
// a cache-resident block: block max, then exp and add, one rescale per block),
// in the input's precision, with partial sums in two levels. exp is a
// vectorised polynomial within 1 eps relative (softmin_simd.h); terms below
// exp(-87) (float) or exp(-708) (double) relative to the max are dropped.
// Measured error: |out - exact| <= ~1 eps * (1 + max |h - scale * C|), about
// what forming h - scale * C in the input's precision already costs; float32
// within 2x of a naive float32 torch.logsumexp (tests/test_C_softmin.py).
// Results do not depend on num_threads (each output is reduced in a fixed
// order by one thread), but may differ in the last bits between
// instruction-set copies (FMA or not; the vector width orders partial sums).
//
// `isa`: "auto" (the widest copy this CPU runs) or one of available_isas()
// (lsa.h). Bad values raise std::invalid_argument.
#pragma once

#include <cstdint>
#include <string>

#include "common.h"

namespace fastot {

template <typename T>
void lse_dense(const T* C, const T* h, const T* scale, int64_t B, int64_t n, int64_t m, bool transpose,
               T* out, int n_threads, const std::string& isa = "auto");

// The fused Sinkhorn step: both c-transforms in one pass over the cost.
//   S[b, i] = LSE_j (hg[b, j] - sf[b] C[b, i, j])
//   f[b, i] = min(coef[b] S[b, i], cap[b, i])          (no cap: coef[b] S[b, i])
//   T[b, j] = LSE_i (log_a[b, i] + sg[b] f[b, i] - sg[b] C[b, i, j])
// i.e. the row update from hg and, from the f it gives, the next column
// update (scales sf, sg may differ: epsilon scaling). Problems with
// active[b] == 0 are skipped (their S and T rows are not written); active
// may be null (all active). Shapes as the other kernels; cap (B, n) may be
// null. Same conventions for -inf / +inf / NaN as lse_dense; results do not
// depend on n_threads. T's sums are grouped differently from
// lse_dense(transpose = true), so they may differ from it in the last bits.
// Dense, sf == sg for every problem (one temperature): the column sums reuse
// the row pass's exponentials (one multiply-add per entry instead of an exp);
// columns whose sum falls below a floor are recomputed exactly. S then comes
// from a per-row two-pass reduction and may differ from lse_dense in the last
// bits too.
template <typename T>
struct StepArgs {
  const T* hg;              // (B, m)
  const T* sf;              // (B,) scale of the row update
  const T* log_a;           // (B, n)
  const T* coef;            // (B,) f = coef * S (-tau_a * epsilon)
  const T* cap;             // (B, n) or null: f = min(coef * S, cap)
  const T* sg;              // (B,) scale of the column update
  const uint8_t* active;    // (B,) or null
};

template <typename T>
void sinkhorn_step_dense(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* S, T* Tout,
                         int n_threads, const std::string& isa = "auto");

template <typename T>
void sinkhorn_step_sqeuclidean(const T* x, const T* y, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m,
                               int64_t d, T* S, T* Tout, int n_threads, const std::string& isa = "auto");

template <typename T>
void lse_sqeuclidean(const T* x, const T* y, const T* h, const T* scale, int64_t B, int64_t n, int64_t m,
                     int64_t d, T* out, int n_threads, const std::string& isa = "auto");

// The linear cost of a plan: out[b] = sum_ij P_ij C_ij with
// P_ij = exp(hr[b, i] + hc[b, j] - scale[b] C[b, i, j]) (0 where C = +inf or
// P underflows), hr (B, n), hc (B, m); rows summed in double. The
// sqeuclidean variant computes C on the fly as lse_sqeuclidean does.
template <typename T>
void plan_dot_dense(const T* C, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n, int64_t m, T* out,
                    int n_threads, const std::string& isa = "auto");
template <typename T>
void plan_dot_sqeuclidean(const T* x, const T* y, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n,
                          int64_t m, int64_t d, T* out, int n_threads, const std::string& isa = "auto");

// The kernels' exp applied elementwise (for accuracy tests). full_range =
// false is the variant the kernels use, valid for x <= 0 only.
template <typename T>
void exp_approx(const T* x, int64_t count, T* out, bool full_range, const std::string& isa = "auto");

// The copy of the log-sum-exp kernels that `isa` selects ("auto" resolved).
std::string softmin_isa(const std::string& isa);

#define FASTOT_DECLARE_SOFTMIN_ISA(NS)                                                                \
  namespace NS {                                                                                      \
  template <typename T>                                                                               \
  void lse_dense(const T* C, const T* h, const T* scale, int64_t B, int64_t n, int64_t m,             \
                 bool transpose, T* out, int n_threads);                                              \
  template <typename T>                                                                               \
  void lse_sqeuclidean(const T* x, const T* y, const T* h, const T* scale, int64_t B, int64_t n,      \
                       int64_t m, int64_t d, T* out, int n_threads);                                  \
  template <typename T>                                                                               \
  void sinkhorn_step_dense(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* S,   \
                           T* Tout, int n_threads);                                                   \
  template <typename T>                                                                               \
  void sinkhorn_step_sqeuclidean(const T* x, const T* y, const StepArgs<T>& a, int64_t B, int64_t n,  \
                                 int64_t m, int64_t d, T* S, T* Tout, int n_threads);                 \
  template <typename T>                                                                               \
  void plan_dot_dense(const T* C, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n,     \
                      int64_t m, T* out, int n_threads);                                              \
  template <typename T>                                                                               \
  void plan_dot_sqeuclidean(const T* x, const T* y, const T* hr, const T* hc, const T* scale,         \
                            int64_t B, int64_t n, int64_t m, int64_t d, T* out, int n_threads);       \
  template <typename T>                                                                               \
  void exp_approx(const T* x, int64_t count, T* out, bool full_range);                                \
  }
FASTOT_DECLARE_SOFTMIN_ISA(generic)
FASTOT_DECLARE_SOFTMIN_ISA(avx2)
FASTOT_DECLARE_SOFTMIN_ISA(avx512)
#undef FASTOT_DECLARE_SOFTMIN_ISA

}  // namespace fastot
