// A thin SIMD layer for the log-sum-exp kernels (softmin.cpp) and a
// vectorised exp. Included only by files compiled once per instruction set:
// everything lives in fastot::FASTOT_ISA::simd, so the copies never collide at
// link time (same-named inline functions compiled with different -m flags
// would otherwise be merged by the linker).
//
// Backends, picked by the compiler flags of the including file:
//   AVX-512F (16 floats / 8 doubles), AVX2 (+FMA when -mfma), SSE2 (x86-64
//   baseline), and plain scalar code elsewhere.
// Intrinsics rather than auto-vectorisation: the dot-product micro-kernel
// needs an exact register blocking, and exp needs integer bit tricks that the
// vectoriser handles unreliably without -ffast-math (which this project does
// not use: +inf marks forbidden pairs).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#ifndef FASTOT_ISA
#define FASTOT_ISA generic
#endif

#define FASTOT_INLINE inline __attribute__((always_inline))

namespace fastot {
namespace FASTOT_ISA {
namespace simd {

// Simd<T>: the vector type V with L lanes and its operations. Semantics shared
// by every backend (the kernels rely on them):
//   max(a, b), min(a, b): b when either operand is NaN (x86 MAXPS/MINPS order),
//     so max(v, acc) ignores a NaN v and max(lo, x) passes a NaN x through;
//   fmadd(a, b, c) = a*b + c, fnmadd(a, b, c) = c - a*b: one rounding where the
//     ISA has FMA (AVX2+FMA, AVX-512), two on SSE2 / scalar;
//   zero_if_lt(x, lo, r): 0 where x < lo (ordered), else r;
//   mul_unless_lt(x, lo, a, b): 0 where x < lo (ordered), else a * b;
//   any_gt(a, b): some lane has a > b (ordered);
//   select_eq / select_gt(a, b, u, r): u where a == b / a > b (ordered), else r;
//   scale_pow2_unless_lt(x, lo, p, t, k, bias): 0 where x < lo, else p * 2^k
//     (AVX-512: vscalef with k; others: pow2(t, bias) with t = magic + k);
//   pow2(t, bias): reinterprets (bits(t) << mantissa_bits) + (bias << mantissa_bits)
//     as T, i.e. 2^(k + bias - exponent_bias) when t = magic + k (see exp below);
//   kMR x kNRv: register tile of the dot-product micro-kernel (rows x vectors).
template <typename T>
struct Simd;

#if defined(__AVX512F__)

template <>
struct Simd<float> {
  using V = __m512;
  static constexpr int L = 16, kMR = 8, kNRv = 3;
  static FASTOT_INLINE V set1(float a) { return _mm512_set1_ps(a); }
  static FASTOT_INLINE V zero() { return _mm512_setzero_ps(); }
  static FASTOT_INLINE V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static FASTOT_INLINE V load(const float* p) { return _mm512_load_ps(p); }
  static FASTOT_INLINE void storeu(float* p, V a) { _mm512_storeu_ps(p, a); }
  static FASTOT_INLINE void store(float* p, V a) { _mm512_store_ps(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static FASTOT_INLINE V max(V a, V b) { return _mm512_max_ps(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm512_min_ps(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), r, _mm512_setzero_ps());
  }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) {
    return _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), a, b);
  }
  // x < lo (ordered) ? 0 : p * 2^k, k an integer-valued float (t unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V, V k, int) {
    return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), p, k);
  }
  static FASTOT_INLINE float hsum(V a) { return _mm512_reduce_add_ps(a); }
  static FASTOT_INLINE float hmax(V a) { return _mm512_reduce_max_ps(a); }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), r, u);
  }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), r, u);
  }
  static FASTOT_INLINE bool any_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m512i i = _mm512_slli_epi32(_mm512_castps_si512(t), 23);
    return _mm512_castsi512_ps(_mm512_add_epi32(i, _mm512_set1_epi32(bias << 23)));
  }
};

template <>
struct Simd<double> {
  using V = __m512d;
  static constexpr int L = 8, kMR = 8, kNRv = 3;
  static FASTOT_INLINE V set1(double a) { return _mm512_set1_pd(a); }
  static FASTOT_INLINE V zero() { return _mm512_setzero_pd(); }
  static FASTOT_INLINE V loadu(const double* p) { return _mm512_loadu_pd(p); }
  static FASTOT_INLINE V load(const double* p) { return _mm512_load_pd(p); }
  static FASTOT_INLINE void storeu(double* p, V a) { _mm512_storeu_pd(p, a); }
  static FASTOT_INLINE void store(double* p, V a) { _mm512_store_pd(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm512_add_pd(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm512_fnmadd_pd(a, b, c); }
  static FASTOT_INLINE V max(V a, V b) { return _mm512_max_pd(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm512_min_pd(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, lo, _CMP_LT_OQ), r, _mm512_setzero_pd());
  }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) {
    return _mm512_maskz_mul_pd(_mm512_cmp_pd_mask(x, lo, _CMP_NLT_UQ), a, b);
  }
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V, V k, int) {
    return _mm512_maskz_scalef_pd(_mm512_cmp_pd_mask(x, lo, _CMP_NLT_UQ), p, k);
  }
  static FASTOT_INLINE double hsum(V a) { return _mm512_reduce_add_pd(a); }
  static FASTOT_INLINE double hmax(V a) { return _mm512_reduce_max_pd(a); }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ), r, u);
  }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_GT_OQ), r, u);
  }
  static FASTOT_INLINE bool any_gt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ) != 0; }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m512i i = _mm512_slli_epi64(_mm512_castpd_si512(t), 52);
    return _mm512_castsi512_pd(_mm512_add_epi64(i, _mm512_set1_epi64(int64_t(bias) << 52)));
  }
};

#elif defined(__AVX2__)

template <>
struct Simd<float> {
  using V = __m256;
  static constexpr int L = 8, kMR = 6, kNRv = 2;
  static FASTOT_INLINE V set1(float a) { return _mm256_set1_ps(a); }
  static FASTOT_INLINE V zero() { return _mm256_setzero_ps(); }
  static FASTOT_INLINE V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static FASTOT_INLINE V load(const float* p) { return _mm256_load_ps(p); }
  static FASTOT_INLINE void storeu(float* p, V a) { _mm256_storeu_ps(p, a); }
  static FASTOT_INLINE void store(float* p, V a) { _mm256_store_ps(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
#if defined(__FMA__)
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
#else
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm256_add_ps(_mm256_mul_ps(a, b), c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm256_sub_ps(c, _mm256_mul_ps(a, b)); }
#endif
  static FASTOT_INLINE V max(V a, V b) { return _mm256_max_ps(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm256_min_ps(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) {
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), r);
  }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) { return zero_if_lt(x, lo, mul(a, b)); }
  // x < lo (ordered) ? 0 : p * 2^k with t = magic + k (k itself unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V t, V, int bias) {
    return zero_if_lt(x, lo, mul(p, pow2(t, bias)));
  }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) {
    return _mm256_blendv_ps(r, u, _mm256_cmp_ps(a, b, _CMP_EQ_OQ));
  }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) {
    return _mm256_blendv_ps(r, u, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
  }
  static FASTOT_INLINE bool any_gt(V a, V b) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0;
  }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m256i i = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(i, _mm256_set1_epi32(bias << 23)));
  }
};

template <>
struct Simd<double> {
  using V = __m256d;
  static constexpr int L = 4, kMR = 6, kNRv = 2;
  static FASTOT_INLINE V set1(double a) { return _mm256_set1_pd(a); }
  static FASTOT_INLINE V zero() { return _mm256_setzero_pd(); }
  static FASTOT_INLINE V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static FASTOT_INLINE V load(const double* p) { return _mm256_load_pd(p); }
  static FASTOT_INLINE void storeu(double* p, V a) { _mm256_storeu_pd(p, a); }
  static FASTOT_INLINE void store(double* p, V a) { _mm256_store_pd(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm256_add_pd(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm256_mul_pd(a, b); }
#if defined(__FMA__)
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm256_fnmadd_pd(a, b, c); }
#else
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm256_add_pd(_mm256_mul_pd(a, b), c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm256_sub_pd(c, _mm256_mul_pd(a, b)); }
#endif
  static FASTOT_INLINE V max(V a, V b) { return _mm256_max_pd(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm256_min_pd(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) {
    return _mm256_andnot_pd(_mm256_cmp_pd(x, lo, _CMP_LT_OQ), r);
  }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) { return zero_if_lt(x, lo, mul(a, b)); }
  // x < lo (ordered) ? 0 : p * 2^k with t = magic + k (k itself unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V t, V, int bias) {
    return zero_if_lt(x, lo, mul(p, pow2(t, bias)));
  }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) {
    return _mm256_blendv_pd(r, u, _mm256_cmp_pd(a, b, _CMP_EQ_OQ));
  }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) {
    return _mm256_blendv_pd(r, u, _mm256_cmp_pd(a, b, _CMP_GT_OQ));
  }
  static FASTOT_INLINE bool any_gt(V a, V b) {
    return _mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_GT_OQ)) != 0;
  }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m256i i = _mm256_slli_epi64(_mm256_castpd_si256(t), 52);
    return _mm256_castsi256_pd(_mm256_add_epi64(i, _mm256_set1_epi64x(int64_t(bias) << 52)));
  }
};

#elif defined(__SSE2__)

template <>
struct Simd<float> {
  using V = __m128;
  static constexpr int L = 4, kMR = 4, kNRv = 2;
  static FASTOT_INLINE V set1(float a) { return _mm_set1_ps(a); }
  static FASTOT_INLINE V zero() { return _mm_setzero_ps(); }
  static FASTOT_INLINE V loadu(const float* p) { return _mm_loadu_ps(p); }
  static FASTOT_INLINE V load(const float* p) { return _mm_load_ps(p); }
  static FASTOT_INLINE void storeu(float* p, V a) { _mm_storeu_ps(p, a); }
  static FASTOT_INLINE void store(float* p, V a) { _mm_store_ps(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm_add_ps(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm_sub_ps(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm_sub_ps(c, _mm_mul_ps(a, b)); }
  static FASTOT_INLINE V max(V a, V b) { return _mm_max_ps(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm_min_ps(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) { return _mm_andnot_ps(_mm_cmplt_ps(x, lo), r); }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) { return zero_if_lt(x, lo, mul(a, b)); }
  // x < lo (ordered) ? 0 : p * 2^k with t = magic + k (k itself unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V t, V, int bias) {
    return zero_if_lt(x, lo, mul(p, pow2(t, bias)));
  }
  static FASTOT_INLINE V blend(V m, V u, V r) { return _mm_or_ps(_mm_and_ps(m, u), _mm_andnot_ps(m, r)); }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) { return blend(_mm_cmpeq_ps(a, b), u, r); }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) { return blend(_mm_cmpgt_ps(a, b), u, r); }
  static FASTOT_INLINE bool any_gt(V a, V b) { return _mm_movemask_ps(_mm_cmpgt_ps(a, b)) != 0; }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m128i i = _mm_slli_epi32(_mm_castps_si128(t), 23);
    return _mm_castsi128_ps(_mm_add_epi32(i, _mm_set1_epi32(bias << 23)));
  }
};

template <>
struct Simd<double> {
  using V = __m128d;
  static constexpr int L = 2, kMR = 4, kNRv = 2;
  static FASTOT_INLINE V set1(double a) { return _mm_set1_pd(a); }
  static FASTOT_INLINE V zero() { return _mm_setzero_pd(); }
  static FASTOT_INLINE V loadu(const double* p) { return _mm_loadu_pd(p); }
  static FASTOT_INLINE V load(const double* p) { return _mm_load_pd(p); }
  static FASTOT_INLINE void storeu(double* p, V a) { _mm_storeu_pd(p, a); }
  static FASTOT_INLINE void store(double* p, V a) { _mm_store_pd(p, a); }
  static FASTOT_INLINE V add(V a, V b) { return _mm_add_pd(a, b); }
  static FASTOT_INLINE V sub(V a, V b) { return _mm_sub_pd(a, b); }
  static FASTOT_INLINE V mul(V a, V b) { return _mm_mul_pd(a, b); }
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return _mm_sub_pd(c, _mm_mul_pd(a, b)); }
  static FASTOT_INLINE V max(V a, V b) { return _mm_max_pd(a, b); }
  static FASTOT_INLINE V min(V a, V b) { return _mm_min_pd(a, b); }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) { return _mm_andnot_pd(_mm_cmplt_pd(x, lo), r); }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) { return zero_if_lt(x, lo, mul(a, b)); }
  // x < lo (ordered) ? 0 : p * 2^k with t = magic + k (k itself unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V t, V, int bias) {
    return zero_if_lt(x, lo, mul(p, pow2(t, bias)));
  }
  static FASTOT_INLINE V blend(V m, V u, V r) { return _mm_or_pd(_mm_and_pd(m, u), _mm_andnot_pd(m, r)); }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) { return blend(_mm_cmpeq_pd(a, b), u, r); }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) { return blend(_mm_cmpgt_pd(a, b), u, r); }
  static FASTOT_INLINE bool any_gt(V a, V b) { return _mm_movemask_pd(_mm_cmpgt_pd(a, b)) != 0; }
  static FASTOT_INLINE V pow2(V t, int bias) {
    const __m128i i = _mm_slli_epi64(_mm_castpd_si128(t), 52);
    return _mm_castsi128_pd(_mm_add_epi64(i, _mm_set1_epi64x(int64_t(bias) << 52)));
  }
};

#else  // portable scalar fallback (one lane)

template <typename T>
struct Simd {
  struct V {
    T v;
  };
  static constexpr int L = 1, kMR = 4, kNRv = 4;
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  static constexpr int kMant = sizeof(T) == 4 ? 23 : 52;
  static FASTOT_INLINE V set1(T a) { return {a}; }
  static FASTOT_INLINE V zero() { return {T(0)}; }
  static FASTOT_INLINE V loadu(const T* p) { return {*p}; }
  static FASTOT_INLINE V load(const T* p) { return {*p}; }
  static FASTOT_INLINE void storeu(T* p, V a) { *p = a.v; }
  static FASTOT_INLINE void store(T* p, V a) { *p = a.v; }
  static FASTOT_INLINE V add(V a, V b) { return {a.v + b.v}; }
  static FASTOT_INLINE V sub(V a, V b) { return {a.v - b.v}; }
  static FASTOT_INLINE V mul(V a, V b) { return {a.v * b.v}; }
  static FASTOT_INLINE V fmadd(V a, V b, V c) { return {a.v * b.v + c.v}; }
  static FASTOT_INLINE V fnmadd(V a, V b, V c) { return {c.v - a.v * b.v}; }
  static FASTOT_INLINE V max(V a, V b) { return {a.v > b.v ? a.v : b.v}; }
  static FASTOT_INLINE V min(V a, V b) { return {a.v < b.v ? a.v : b.v}; }
  static FASTOT_INLINE V zero_if_lt(V x, V lo, V r) { return {x.v < lo.v ? T(0) : r.v}; }
  static FASTOT_INLINE V mul_unless_lt(V x, V lo, V a, V b) { return zero_if_lt(x, lo, mul(a, b)); }
  // x < lo (ordered) ? 0 : p * 2^k with t = magic + k (k itself unused here).
  static FASTOT_INLINE V scale_pow2_unless_lt(V x, V lo, V p, V t, V, int bias) {
    return zero_if_lt(x, lo, mul(p, pow2(t, bias)));
  }
  static FASTOT_INLINE V select_eq(V a, V b, V u, V r) { return {a.v == b.v ? u.v : r.v}; }
  static FASTOT_INLINE V select_gt(V a, V b, V u, V r) { return {a.v > b.v ? u.v : r.v}; }
  static FASTOT_INLINE bool any_gt(V a, V b) { return a.v > b.v; }
  static FASTOT_INLINE V pow2(V t, int bias) {
    Bits b;
    std::memcpy(&b, &t.v, sizeof(T));
    b = (b << kMant) + (Bits(int64_t(bias)) << kMant);
    T out;
    std::memcpy(&out, &b, sizeof(T));
    return {out};
  }
};

#endif

// Scalar a*b + c with the rounding of Simd<T>::fmadd (one rounding where the
// vector unit has FMA), so norms computed here match dot products computed by
// the vector micro-kernel bit for bit.
template <typename T>
FASTOT_INLINE T fmadd_scalar(T a, T b, T c) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  return std::fma(a, b, c);  // inlined as vfmadd: these copies are built with -mfma
#else
  return a * b + c;
#endif
}

// Horizontal reductions in a fixed lane order (results must not depend on
// anything but the data).
template <typename T>
FASTOT_INLINE T hsum(typename Simd<T>::V a) {
#if defined(__AVX512F__)
  return Simd<T>::hsum(a);
#endif
  alignas(64) T t[Simd<T>::L];
  Simd<T>::store(t, a);
  T s = t[0];
  for (int l = 1; l < Simd<T>::L; ++l) s += t[l];
  return s;
}

template <typename T>
FASTOT_INLINE T hmax(typename Simd<T>::V a) {  // lanes must not be NaN
#if defined(__AVX512F__)
  return Simd<T>::hmax(a);
#endif
  alignas(64) T t[Simd<T>::L];
  Simd<T>::store(t, a);
  T s = t[0];
  for (int l = 1; l < Simd<T>::L; ++l) s = t[l] > s ? t[l] : s;
  return s;
}

// Loads cnt < L elements, the other lanes set to fill (never reads past p + cnt).
template <typename T>
FASTOT_INLINE typename Simd<T>::V load_partial(const T* p, int64_t cnt, T fill) {
  alignas(64) T t[Simd<T>::L];
  for (int l = 0; l < Simd<T>::L; ++l) t[l] = l < cnt ? p[l] : fill;
  return Simd<T>::load(t);
}

// ---------------------------------------------------------------------------
// exp(x), vectorised: x = k ln2 + r with |r| <= ln2/2 (Cody-Waite split of
// ln2), exp(r) by a minimax polynomial (Cephes' expf for float: degree 7;
// SLEEF's exp for double: degree 12), 2^k built in the exponent bits.
//   * x below Lo (-87 / -708) gives exactly 0: results are never subnormal
//     (subnormal arithmetic runs ~100x slower on x86), and in a log-sum-exp
//     with the max subtracted such terms are below 1e-37 / 1e-307 of the sum.
//     -inf gives 0.
//   * kFullRange = false: the caller guarantees x <= 0 (or NaN); positive x
//     gives garbage. kFullRange = true: x up to log(max) (88.72 / 709.78) is
//     computed, above that +inf.
//   * NaN gives NaN.
// Accuracy (tests/test_C_softmin.py, against a long-double exp on dense
// grids): relative error <= 1 eps (measured 0.6-0.8 eps).
template <typename T>
struct ExpConst;

template <>
struct ExpConst<float> {
  static constexpr float lo = -87.0f, hi = 88.72f;
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  static constexpr float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr int bias = 127;
};

template <>
struct ExpConst<double> {
  static constexpr double lo = -708.0, hi = 709.78;
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 0.693147180369123816490, ln2_lo = 1.90821492927058770002e-10;
  static constexpr double magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int bias = 1023;
};

template <typename T>
FASTOT_INLINE typename Simd<T>::V exp_poly(typename Simd<T>::V r);

template <>
FASTOT_INLINE typename Simd<float>::V exp_poly<float>(typename Simd<float>::V r) {
  using S = Simd<float>;
  auto p = S::set1(1.9875691500e-4f);
  p = S::fmadd(p, r, S::set1(1.3981999507e-3f));
  p = S::fmadd(p, r, S::set1(8.3334519073e-3f));
  p = S::fmadd(p, r, S::set1(4.1665795894e-2f));
  p = S::fmadd(p, r, S::set1(1.6666665459e-1f));
  p = S::fmadd(p, r, S::set1(5.0000001201e-1f));
  p = S::fmadd(p, r, S::set1(1.0f));
  return S::fmadd(p, r, S::set1(1.0f));
}

template <>
FASTOT_INLINE typename Simd<double>::V exp_poly<double>(typename Simd<double>::V r) {
  using S = Simd<double>;
  auto p = S::set1(2.08860621107283687536341e-09);
  p = S::fmadd(p, r, S::set1(2.51112930892876518610661e-08));
  p = S::fmadd(p, r, S::set1(2.75573911234900471893338e-07));
  p = S::fmadd(p, r, S::set1(2.75572362911928827629423e-06));
  p = S::fmadd(p, r, S::set1(2.4801587159235472998791e-05));
  p = S::fmadd(p, r, S::set1(0.000198412698960509205564975));
  p = S::fmadd(p, r, S::set1(0.00138888888889774492207962));
  p = S::fmadd(p, r, S::set1(0.00833333333331652721664984));
  p = S::fmadd(p, r, S::set1(0.0416666666666665047591422));
  p = S::fmadd(p, r, S::set1(0.166666666666666851703837));
  p = S::fmadd(p, r, S::set1(0.5));
  p = S::fmadd(p, r, S::set1(1.0));
  return S::fmadd(p, r, S::set1(1.0));
}

template <typename T, bool kFullRange = false>
FASTOT_INLINE typename Simd<T>::V exp(typename Simd<T>::V x) {
  using S = Simd<T>;
  using K = ExpConst<T>;
  // No clamp at Lo: lanes below it (-inf included) may compute garbage (inf,
  // NaN, wrapped exponent bits: no traps, no subnormals) that the final masked
  // operation replaces by 0.
  const auto xc = kFullRange ? S::min(S::set1(K::hi), x) : x;  // NaN passes through
  const auto magic = S::set1(K::magic);
  const auto t = S::fmadd(xc, S::set1(K::log2e), magic);  // magic + round(x / ln2)
  const auto k = S::sub(t, magic);
  auto r = S::fnmadd(k, S::set1(K::ln2_hi), xc);
  r = S::fnmadd(k, S::set1(K::ln2_lo), r);
  const auto p = exp_poly<T>(r);
  const auto lo = S::set1(K::lo);
  if constexpr (!kFullRange) return S::scale_pow2_unless_lt(x, lo, p, t, k, K::bias);
  // For x > 0, 2^k may not fit the exponent field (k = 128 / 1024): scale by
  // 2^(k-1), then by 2 (exact). Not for x <= 0, where 2^(k-1) may be subnormal.
  const auto zero = S::zero(), one = S::set1(T(1));
  const auto tt = S::select_gt(x, zero, S::sub(t, one), t);
  const auto kk = S::select_gt(x, zero, S::sub(k, one), k);
  auto y = S::scale_pow2_unless_lt(x, lo, p, tt, kk, K::bias);
  y = S::mul(y, S::select_gt(x, zero, S::set1(T(2)), one));
  return S::select_gt(x, S::set1(K::hi), S::set1(std::numeric_limits<T>::infinity()), y);
}

// acc + exp(x), x <= 0 or NaN. (Skipping the exp for vectors entirely below
// Lo, where it is 0, was tried: 10% slower when nothing is skipped, and up to
// 1.9x slower at small epsilon, where the branch is unpredictable.)
template <typename T>
FASTOT_INLINE typename Simd<T>::V add_exp(typename Simd<T>::V acc, typename Simd<T>::V x) {
  return Simd<T>::add(acc, exp<T>(x));
}

}  // namespace simd
}  // namespace FASTOT_ISA
}  // namespace fastot
