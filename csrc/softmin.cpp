// Log-sum-exp reductions for log-domain Sinkhorn (see softmin.h for the
// contract). Compiled once per instruction set (CMakeLists.txt), each copy in
// its own namespace; softmin_dispatch.cpp picks one at run time.
//
// Every output is a log-sum-exp over one row (or column) of
//   v = h - scale * C,
// taken in blocks that sit in cache: pass 1 finds the block's max, pass 2 sums
// exp(v - shift) with shift the running max, and the running sum is rescaled
// once per block, only when the max grew. Terms that are -inf (C = +inf or
// h = -inf) contribute exactly 0 and never produce NaN: the shift of an
// all -inf prefix is 0, not -inf.
//
//  * lse_dense, rows: one row at a time, in chunks of kRowChunk elements.
//  * lse_dense, columns: a slab of up to kSlab columns per task, streamed over
//    blocks of kColBlockRows rows of the row-major C (no transpose); the
//    per-column max/sum live in vector registers' lanes.
//  * lse_sqeuclidean: per task a block of rows of x; per column tile the dot
//    products <x_i, y_j> come from a register-blocked micro-kernel (kMR rows x
//    kNRv vectors, broadcast x, packed y) into a small tile buffer, which the
//    same two-pass reduction then consumes. Memory: y packed once per call
//    (O(m d)) plus one tile per worker; never n x m.
//
// FMA: this file's AVX2 and AVX-512 copies are built with -mfma and use fused
// multiply-adds explicitly (dot products, exp's polynomial, h - s*C), which
// only removes roundings. Norms |x_i|^2 are accumulated with the same
// operations in the same order as the dot products, so C_ii = 0 exactly when
// x_i == y_j.
#include "softmin.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "softmin_simd.h"

namespace fastot {
namespace FASTOT_ISA {
namespace {

using simd::Simd;

template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// Tuning (float32/float64 n = m = 4096 on a 2-core AVX-512 machine):
// elements of a row reduced per two-pass chunk (C and h chunks stay in L1)...
template <typename T>
constexpr int64_t kRowChunk = 8192 / sizeof(T);
// ...target elements per row-direction task (tasks are blocks of whole rows)...
constexpr int64_t kRowTaskElems = 32768;
// ...columns per column-direction task at most, and rows per block there...
template <typename T>
constexpr int64_t kSlab = 2048 / sizeof(T);
constexpr int64_t kColBlockRows = 8;
constexpr int64_t kMidBlocks = 32;  // blocks (chunks, tiles) per partial sum
// ...and tasks wanted per call before slabs get narrower than kSlab.
constexpr int64_t kMinTasks = 16;

// Threads worth starting for `work` (elements of the reduction, each about
// one exp): each thread is started per call, ~30 us, so small calls run on
// fewer threads. Results do not depend on the thread count.
constexpr int64_t kWorkPerThread = int64_t(1) << 18;
inline int threads_for(int64_t work, int n_threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, work / kWorkPerThread)));
}

// Aligned scratch. Not std::vector: out-of-line template code is merged across
// this file's per-ISA copies by the linker, and could run AVX-512 code from
// the generic copy.
template <typename T>
struct Buf {
  T* p;
  explicit Buf(int64_t count)
      : p(static_cast<T*>(::operator new[](static_cast<size_t>(count > 0 ? count : 1) * sizeof(T),
                                           std::align_val_t{64}))) {}
  ~Buf() { ::operator delete[](p, std::align_val_t{64}); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Prefetches the cache lines of [p, p + kBytes) (a hint: never faults, so p
// may lie past the end of the data; it is formed by integer arithmetic).
template <int kBytes>
FASTOT_INLINE void prefetch(uintptr_t p) {
#pragma GCC unroll 16
  for (int q = 0; q < kBytes; q += 64) __builtin_prefetch(reinterpret_cast<const void*>(p + q), 0, 3);
}
template <int kBytes, typename T>
FASTOT_INLINE void prefetch(const T* p, int64_t ahead) {
  prefetch<kBytes>(reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(ahead) * sizeof(T));
}

// The running sum of a log-sum-exp is kept as sum * exp(shift(M)), M the max
// so far: shift is M, or 0 while every term was -inf (so v - shift is never
// -inf - -inf).
template <typename T>
FASTOT_INLINE T shift_of(T M) {
  return M == -kInf<T> ? T(0) : M;
}

// Running log-sum-exp of one output over blocks: max M, and the sum relative
// to shift_of(M) in two levels (blocks gather in `mid`, kMidBlocks at a time,
// before joining `sum`), so float32 sums over many blocks keep the accuracy
// of a tree-like reduction.
template <typename T>
struct LseAcc {
  T M = -kInf<T>, sum = 0, mid = 0;
  int64_t blocks = 0;
  // Mn = max(M, the block's max); block_sum = sum over the block of exp(v - shift_of(Mn)).
  FASTOT_INLINE void add(T Mn, T block_sum) {
    if (Mn > M) {  // M = -inf: the factor is 0 (sums are 0, or NaN, which stays)
      const T f = std::exp(M - shift_of(Mn));
      sum *= f;
      mid *= f;
    }
    mid += block_sum;
    M = Mn;
    if (++blocks == kMidBlocks) {
      sum += mid;
      mid = 0;
      blocks = 0;
    }
  }
  FASTOT_INLINE T result() const { return shift_of(M) + std::log(sum + mid); }
};

// ---------------------------------------------------------------------------
// Dense, reduction along rows: out[i] = LSE_j (h[j] - s C[i, j]), rows [i0, i1).
//
// Rows are cut into chunks of kRowChunk elements, processed in memory order.
// Pass 2 of a chunk (exp and sum, from cache, compute-bound) runs fused with
// pass 1 of the next chunk (max, streamed from memory), so the loads from
// memory overlap the arithmetic instead of alternating with it.
template <typename T>
void lse_dense_rows(const T* C, const T* h, T s, int64_t m, int64_t i0, int64_t i1, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  constexpr int64_t K = kRowChunk<T>;
  if (m == 0) {
    for (int64_t i = i0; i < i1; ++i) out[i] = -kInf<T>;
    return;
  }
  const V vs = S::set1(s);
  const V ninf = S::set1(-kInf<T>);
  // v = h - s C for the vector at j; for the last, partial vector of a chunk
  // of length len the lanes past it get C = 0, h = -inf, so v = -inf.
  auto v_at = [&](const T* c, const T* hh, int64_t j) { return S::fnmadd(vs, S::loadu(c + j), S::loadu(hh + j)); };
  auto v_tail = [&](const T* c, const T* hh, int64_t j, int64_t len) {
    return S::fnmadd(vs, simd::load_partial(c + j, len - j, T(0)), simd::load_partial(hh + j, len - j, -kInf<T>));
  };
  // NaN terms are ignored by the max and caught by pass 2.
  auto chunk_max = [&](const T* c, const T* hh, int64_t len, int64_t j, V a0, V a1) {
    const int64_t full = len / L * L;
    for (; j < full; j += L) a0 = S::max(v_at(c, hh, j), a0);
    if (full < len) a1 = S::max(v_tail(c, hh, full, len), a1);
    return S::max(a0, a1);
  };
  int64_t i = i0, j0 = 0;
  LseAcc<T> acc;
  T Mc = simd::hmax<T>(chunk_max(C + i * m, h, std::min(K, m), 0, ninf, ninf));
  for (;;) {
    const int64_t len = std::min(K, m - j0);
    const T* cc = C + i * m + j0;
    const T* hh = h + j0;
    const T Mn = Mc > acc.M ? Mc : acc.M;
    const V sh = S::set1(shift_of(Mn));
    // The next chunk: further along this row, or the start of the next one.
    int64_t ni = i, nj0 = j0 + K;
    if (nj0 >= m) ni = i + 1, nj0 = 0;
    const bool has_next = ni < i1;
    const int64_t nlen = has_next ? std::min(K, m - nj0) : 0;
    const T* nc = has_next ? C + ni * m + nj0 : cc;
    const T* nh = h + nj0;
    V s0 = S::zero(), s1 = S::zero(), s2 = S::zero(), s3 = S::zero();
    V a0 = ninf, a1 = ninf, a2 = ninf, a3 = ninf;
    const int64_t both = std::min(len, nlen) / (4 * L) * (4 * L);
    int64_t j = 0;
    for (; j < both; j += 4 * L) {
      prefetch<4 * L * sizeof(T)>(nc, nlen + j);  // the chunk after next (C is contiguous)
      s0 = simd::add_exp<T>(s0, S::sub(v_at(cc, hh, j), sh));
      a0 = S::max(v_at(nc, nh, j), a0);
      s1 = simd::add_exp<T>(s1, S::sub(v_at(cc, hh, j + L), sh));
      a1 = S::max(v_at(nc, nh, j + L), a1);
      s2 = simd::add_exp<T>(s2, S::sub(v_at(cc, hh, j + 2 * L), sh));
      a2 = S::max(v_at(nc, nh, j + 2 * L), a2);
      s3 = simd::add_exp<T>(s3, S::sub(v_at(cc, hh, j + 3 * L), sh));
      a3 = S::max(v_at(nc, nh, j + 3 * L), a3);
    }
    // The rest of this chunk's pass 2 (same v bit for bit as in its pass 1)...
    const int64_t full = len / L * L;
    for (int64_t q = j; q < full; q += L) s0 = simd::add_exp<T>(s0, S::sub(v_at(cc, hh, q), sh));
    if (full < len) s1 = simd::add_exp<T>(s1, S::sub(v_tail(cc, hh, full, len), sh));
    // ...and of the next chunk's pass 1.
    if (has_next) Mc = simd::hmax<T>(S::max(chunk_max(nc, nh, nlen, j, a0, a1), S::max(a2, a3)));
    acc.add(Mn, simd::hsum<T>(S::add(S::add(s0, s1), S::add(s2, s3))));
    if (ni != i) {
      out[i] = acc.result();
      acc = LseAcc<T>();
    }
    if (!has_next) break;
    i = ni;
    j0 = nj0;
  }
}

// ---------------------------------------------------------------------------
// Dense, reduction along columns: out[j] = LSE_i (h[i] - s C[i, j]) for the
// slab of columns [j0, j0 + w), w <= kSlab, streaming the rows of C.
template <typename T>
void lse_dense_cols(const T* C, const T* h, T s, int64_t n, int64_t m, int64_t j0, int64_t w, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  constexpr int64_t kMaxV = kSlab<T> / L;
  const int64_t full = w / L;                // whole vectors
  const int64_t tail = w - full * L;         // columns in a last partial vector
  const int64_t nv = full + (tail > 0);
  const V vs = S::set1(s);
  const V ninf = S::set1(-kInf<T>);
  // Per column: running max M, shift SH, and the sum in two levels (MID over
  // up to kMidBlocks blocks, then SUM) so that float32 sums over many rows
  // keep the accuracy of a tree-like reduction.
  V M[kMaxV], SH[kMaxV], SUM[kMaxV], MID[kMaxV], BM[kMaxV], BS[kMaxV], FAC[kMaxV];
  for (int64_t g = 0; g < nv; ++g) {
    M[g] = ninf;
    SH[g] = S::zero();
    SUM[g] = S::zero();
    MID[g] = S::zero();
  }
  int64_t blocks = 0;
  for (int64_t r0 = 0; r0 < n; r0 += kColBlockRows) {
    const int64_t r1 = std::min(n, r0 + kColBlockRows);
    // Pass 1: per-column max over the block of rows.
    for (int64_t g = 0; g < nv; ++g) BM[g] = ninf;
    for (int64_t i = r0; i < r1; ++i) {
      const V hv = S::set1(h[i]);
      const T* c = C + i * m + j0;
      for (int64_t g = 0; g < full; ++g) BM[g] = S::max(S::fnmadd(vs, S::loadu(c + g * L), hv), BM[g]);
      if (tail)  // lanes past w see C = 0: finite, ignored at the end
        BM[full] = S::max(S::fnmadd(vs, simd::load_partial(c + full * L, tail, T(0)), hv), BM[full]);
    }
    bool grow = false;
    for (int64_t g = 0; g < nv; ++g) grow |= S::any_gt(BM[g], M[g]);
    if (grow) {
      for (int64_t g = 0; g < nv; ++g) {
        const V Mn = S::max(BM[g], M[g]);
        const V shn = S::select_eq(Mn, ninf, S::zero(), Mn);
        FAC[g] = simd::exp<T>(S::sub(M[g], shn));  // M = -inf: 0
        M[g] = Mn;
        SH[g] = shn;
      }
    }
    // Pass 2: per-column sums of exp(v - shift) over the block (in cache now),
    // kG vectors of columns at a time with their sums in registers; the next
    // block of rows is prefetched meanwhile (this pass is compute-bound).
    constexpr int kG = 4;
    int64_t g0 = 0;
    for (; g0 + kG <= full; g0 += kG) {
      V bs[kG], sh[kG];
#pragma GCC unroll 8
      for (int q = 0; q < kG; ++q) bs[q] = S::zero(), sh[q] = SH[g0 + q];
      for (int64_t i = r0; i < r1; ++i) {
        const V hv = S::set1(h[i]);
        const T* c = C + i * m + j0 + g0 * L;
        prefetch<kG * L * sizeof(T)>(c, kColBlockRows * m);
#pragma GCC unroll 8
        for (int q = 0; q < kG; ++q)
          bs[q] = simd::add_exp<T>(bs[q], S::sub(S::fnmadd(vs, S::loadu(c + q * L), hv), sh[q]));
      }
#pragma GCC unroll 8
      for (int q = 0; q < kG; ++q) BS[g0 + q] = bs[q];
    }
    for (int64_t g = g0; g < nv; ++g) {  // remaining vectors, the last maybe partial
      V bs = S::zero();
      for (int64_t i = r0; i < r1; ++i) {
        const V hv = S::set1(h[i]);
        const T* c = C + i * m + j0 + g * L;
        prefetch<L * sizeof(T)>(c, kColBlockRows * m);
        const V cv = g < full ? S::loadu(c) : simd::load_partial(c, tail, T(0));
        bs = simd::add_exp<T>(bs, S::sub(S::fnmadd(vs, cv, hv), SH[g]));
      }
      BS[g] = bs;
    }
    if (grow) {
      for (int64_t g = 0; g < nv; ++g) {
        SUM[g] = S::mul(SUM[g], FAC[g]);
        MID[g] = S::fmadd(MID[g], FAC[g], BS[g]);
      }
    } else {
      for (int64_t g = 0; g < nv; ++g) MID[g] = S::add(MID[g], BS[g]);
    }
    if (++blocks == kMidBlocks) {
      for (int64_t g = 0; g < nv; ++g) SUM[g] = S::add(SUM[g], MID[g]), MID[g] = S::zero();
      blocks = 0;
    }
  }
  for (int64_t g = 0; g < nv; ++g) {
    alignas(64) T sh[L], sm[L];
    S::store(sh, SH[g]);
    S::store(sm, S::add(SUM[g], MID[g]));
    const int64_t cnt = std::min<int64_t>(L, w - g * L);
    for (int64_t l = 0; l < cnt; ++l) out[j0 + g * L + l] = sh[l] + std::log(sm[l]);
  }
}

template <typename T>
void lse_dense_impl(const T* C, const T* h, const T* scale, int64_t B, int64_t n, int64_t m, bool transpose,
                    T* out, int n_threads) {
  n_threads = threads_for(B * n * m, n_threads);
  if (!transpose) {
    const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(256, kRowTaskElems / std::max<int64_t>(m, 1)));
    const int64_t per = ceil_div(n, rows);
    parallel_for(B * per, n_threads, [&](int64_t t, int) {
      const int64_t b = t / per, i0 = (t % per) * rows, i1 = std::min(n, i0 + rows);
      lse_dense_rows<T>(C + b * n * m, h + b * m, scale[b], m, i0, i1, out + b * n);
    });
    return;
  }
  // Slab width: kSlab, or narrower (never below 4 vectors) so that a small
  // batch still gives kMinTasks tasks. Per-column arithmetic does not depend
  // on the width, so results do not either.
  constexpr int L = Simd<T>::L;
  const int64_t want = ceil_div(kMinTasks, std::max<int64_t>(B, 1));
  const int64_t w = std::min<int64_t>(kSlab<T>, std::max<int64_t>(4 * L, ceil_div(ceil_div(m, want), L) * L));
  const int64_t per = ceil_div(m, w);
  parallel_for(B * per, n_threads, [&](int64_t t, int) {
    const int64_t b = t / per, j0 = (t % per) * w;
    lse_dense_cols<T>(C + b * n * m, h + b * n, scale[b], n, m, j0, std::min(w, m - j0), out + b * m);
  });
}

// ---------------------------------------------------------------------------
// Online squared-Euclidean cost.

template <typename T>
struct Tiles {
  static constexpr int L = Simd<T>::L, MR = Simd<T>::kMR, NR = Simd<T>::kNRv * L;
  static constexpr int64_t MB = MR * 8;                        // rows per task
  static constexpr int64_t NB = NR * ((768 + NR - 1) / NR);   // columns per tile
  static constexpr int64_t KC = 512 / sizeof(T);              // depth per pass of the micro-kernel
};

// Cost-to-exponent epilogue shared by the micro-kernel: C = max(0, xx + yy -
// 2 D) (NaN passes), v = h - s C.
template <typename T>
struct CostArgs {
  const T* xx;   // |x_i|^2 of the micro-tile's rows
  const T* yy;   // |y_j|^2 of its columns
  const T* h;    // h of its columns (-inf past m)
  T s;
  typename Simd<T>::V* vmax;  // per-row running max vectors of the micro-tile's rows
};

// acc[r][c] (+)= sum_k xr[r][k] * yp[k * NR + c] for MR rows and NR columns.
// first: start from 0, else from out. kLast: instead of the dot products, write
// the exponents v = h - s C (kStoreCost: the costs C) to out[r * ldo + c] and
// fold the exponents into vmax[r].
template <typename T, bool kLast, bool kStoreCost = false>
FASTOT_INLINE void micro_kernel(const T* const* xr, const T* yp, int64_t kl, T* out, int64_t ldo, bool first,
                                const CostArgs<T>& ca, const char* pf, int64_t npf) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int MR = S::kMR, NV = S::kNRv, L = S::L, NR = NV * L;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c) acc[r][c] = first ? S::zero() : S::load(out + r * ldo + c * L);
  for (int64_t k = 0; k < kl; ++k) {
    if (k < npf) __builtin_prefetch(pf + 64 * k, 0, 3);  // spread: a burst would stall on fill buffers
    V yv[NV];
#pragma GCC unroll 16
    for (int c = 0; c < NV; ++c) yv[c] = S::load(yp + k * NR + c * L);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V xb = S::set1(xr[r][k]);
#pragma GCC unroll 16
      for (int c = 0; c < NV; ++c) acc[r][c] = S::fmadd(xb, yv[c], acc[r][c]);
    }
  }
  if constexpr (!kLast) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int c = 0; c < NV; ++c) S::store(out + r * ldo + c * L, acc[r][c]);
  } else {
    const V two = S::set1(T(2)), vs = S::set1(ca.s);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const V xv = S::set1(ca.xx[r]);
      V mx = ca.vmax[r];
#pragma GCC unroll 16
      for (int c = 0; c < NV; ++c) {
        const V cst = S::max(S::zero(), S::fnmadd(two, acc[r][c], S::add(xv, S::load(ca.yy + c * L))));
        const V v = S::fnmadd(vs, cst, S::load(ca.h + c * L));
        S::store(out + r * ldo + c * L, kStoreCost ? cst : v);
        mx = S::max(v, mx);
      }
      ca.vmax[r] = mx;
    }
  }
}

// |x_r|^2 for the rows xr[0..R) with the micro-kernel's operations and order
// (a chain of fmadd over k from 0, see the file comment). R chains run side by
// side: one chain alone is bound by the FMA latency.
template <typename T, int R>
FASTOT_INLINE void sqnorms(const T* const* xr, int64_t d, T* out) {
  T acc[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r] = 0;
  for (int64_t k = 0; k < d; ++k) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[r] = simd::fmadd_scalar(xr[r][k], xr[r][k], acc[r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) out[r] = acc[r];
}

// Packs problem y (m, d) into panels of NR columns: yp[p][k][c] = y[p NR + c][k]
// (0 past m), and yy[j] = |y_j|^2, hp[j] = h[j] (0 and -inf past m). yy comes
// from the packed panel, NR columns per vector op, in the micro-kernel's order.
template <typename T>
void pack_y(const T* y, const T* h, int64_t m, int64_t d, int64_t p0, int64_t p1, T* yp, T* yy, T* hp) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, NV = S::kNRv, NR = NV * L;
  for (int64_t p = p0; p < p1; ++p) {
    T* dst = yp + p * d * NR;
    const int64_t j0 = p * NR, cols = std::min<int64_t>(NR, m - j0);
    for (int64_t k = 0; k < d; ++k) {
      for (int64_t c = 0; c < cols; ++c) dst[k * NR + c] = y[(j0 + c) * d + k];
      for (int64_t c = cols; c < NR; ++c) dst[k * NR + c] = 0;
    }
    V acc[NV];
    for (int c = 0; c < NV; ++c) acc[c] = S::zero();
    for (int64_t k = 0; k < d; ++k)
      for (int c = 0; c < NV; ++c) {
        const V v = S::load(dst + k * NR + c * L);
        acc[c] = S::fmadd(v, v, acc[c]);
      }
    for (int c = 0; c < NV; ++c) S::store(yy + j0 + c * L, acc[c]);
    for (int64_t c = 0; c < NR; ++c) hp[j0 + c] = c < cols ? h[j0 + c] : -kInf<T>;
  }
}

// Rows [i0, i1) (at most MB) of one problem: out[i] = LSE_j (hp[j] - s max(0,
// |x_i|^2 + yy[j] - 2 <x_i, y_j>)). buf: MB x NB scratch; kPanel: instead a
// (i1 - i0) x m_pad panel (row stride m_pad) that is left holding the costs
// C of the rows, for the column pass of the fused Sinkhorn step.
template <typename T, bool kPanel = false>
void lse_sqeuclidean_rows(const T* x, const T* yp, const T* yy, const T* hp, T s, int64_t m_pad, int64_t d,
                          int64_t i0, int64_t i1, T* out, T* buf) {
  const int64_t panels = m_pad / Tiles<T>::NR;
  using S = Simd<T>;
  using V = typename S::V;
  using Tl = Tiles<T>;
  constexpr int L = Tl::L, MR = Tl::MR, NR = Tl::NR;
  constexpr int64_t MB = Tl::MB, NB = Tl::NB, KC = Tl::KC;
  const int64_t rows = i1 - i0;
  const int64_t groups = ceil_div(rows, MR);
  const int64_t ldb = kPanel ? m_pad : NB;  // row stride of buf
  alignas(64) T xx[MB];
  LseAcc<T> lse[MB];
  V vmax[MB];
  for (int64_t g = 0; g < groups; ++g) {
    const T* xr[MR];
    for (int r = 0; r < MR; ++r) xr[r] = x + std::min(i0 + g * MR + r, i1 - 1) * d;
    sqnorms<T, MR>(xr, d, xx + g * MR);
  }
  const V ninf = S::set1(-kInf<T>);
  for (int64_t jt = 0; jt < m_pad; jt += NB) {
    const int64_t nb = std::min(NB, m_pad - jt);  // a multiple of NR
    for (int64_t r = 0; r < groups * MR; ++r) vmax[r] = ninf;
    // Exponents v = h - s C of the row block against the column tile, via the
    // dot products (depth blocks of KC), and each row's max over the tile.
    for (int64_t kc = 0; kc == 0 || kc < d; kc += KC) {
      const int64_t kl = std::min(KC, d - kc);
      const bool last = kc + KC >= d;
      auto tile = [&](int64_t p, int64_t g) {
        const int64_t pi = jt / NR + p;  // panel index
        const T* panel = yp + pi * d * NR + kc * NR;
        const T* xr[MR];
        for (int r = 0; r < MR; ++r) {
          const int64_t i = std::min(i0 + g * MR + r, i1 - 1);  // rows past i1 repeat the last
          xr[r] = x + i * d + kc;
        }
        // Software prefetch, a share per call, of the packed y that the next
        // calls read first (each call streams a panel slice that would
        // otherwise come from memory with the FMA units idle), and of the next
        // depth slice of this row group's x.
        const T* next = nullptr;
        int64_t len = 0;
        if (d <= KC) {
          if (pi + 1 < panels) next = panel + d * NR, len = d * NR;  // the next panel
        } else if (!last) {
          next = panel + KC * NR, len = std::min(KC, d - kc - KC) * NR;  // this panel, next depth
        } else if (pi + nb / NR < panels) {
          next = yp + (pi + nb / NR) * d * NR, len = std::min(KC, d) * NR;  // next tile, first depth
        }
        const char* pf = nullptr;
        int64_t npf = 0;  // cache lines, one per step of the micro-kernel's loop
        if (next) {
          constexpr int64_t kLine = 64 / sizeof(T);
          const int64_t lines = ceil_div(len, kLine), share = ceil_div(lines, groups);
          pf = reinterpret_cast<const char*>(next + g * share * kLine);
          npf = std::max<int64_t>(0, std::min({share, lines - g * share, kl}));
        }
        // (A panel has ceil(rows / MR) * MR rows: the micro-kernel writes MR.)
        T* o = buf + g * MR * ldb + (kPanel ? jt : 0) + p * NR;
        if (last) {
          const CostArgs<T> ca{xx + g * MR, yy + jt + p * NR, hp + jt + p * NR, s, vmax + g * MR};
          micro_kernel<T, true, kPanel>(xr, panel, kl, o, ldb, kc == 0, ca, pf, npf);
        } else {
          micro_kernel<T, false>(xr, panel, kl, o, ldb, kc == 0, CostArgs<T>{}, pf, npf);
        }
      };
      // One depth block (d <= KC): each y panel stays in L1 while all row groups
      // use it. Several: each row group's KC-slice of x stays in L1 while it
      // meets every panel of the tile (from L2).
      if (d <= KC) {
        for (int64_t p = 0; p < nb / NR; ++p)
          for (int64_t g = 0; g < groups; ++g) tile(p, g);
      } else {
        for (int64_t g = 0; g < groups; ++g)
          for (int64_t p = 0; p < nb / NR; ++p) tile(p, g);
      }
    }
    // Pass 2 of each row's log-sum-exp over the tile.
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = buf + r * ldb + (kPanel ? jt : 0);
      const T Mc = simd::hmax<T>(vmax[r]);
      const T Mn = Mc > lse[r].M ? Mc : lse[r].M;
      const V sh = S::set1(shift_of(Mn));
      // The exponent at column j: stored, or (kPanel) recomputed from the
      // stored cost by the epilogue's own operation, so bit for bit the same.
      const V vs = S::set1(s);
      auto v_at = [&](int64_t j) {
        if constexpr (kPanel) return S::fnmadd(vs, S::load(row + j), S::load(hp + jt + j));
        return S::load(row + j);
      };
      V s0 = S::zero(), s1 = S::zero();
      int64_t j = 0;
      for (; j + 2 * L <= nb; j += 2 * L) {
        s0 = simd::add_exp<T>(s0, S::sub(v_at(j), sh));
        s1 = simd::add_exp<T>(s1, S::sub(v_at(j + L), sh));
      }
      if (j < nb) s0 = simd::add_exp<T>(s0, S::sub(v_at(j), sh));
      lse[r].add(Mn, simd::hsum<T>(S::add(s0, s1)));
    }
  }
  for (int64_t r = 0; r < rows; ++r) out[i0 + r] = lse[r].result();
}

template <typename T>
void lse_sqeuclidean_impl(const T* x, const T* y, const T* h, const T* scale, int64_t B, int64_t n, int64_t m,
                          int64_t d, T* out, int n_threads) {
  using Tl = Tiles<T>;
  constexpr int NR = Tl::NR;
  if (B == 0 || n == 0) return;
  n_threads = threads_for(B * n * m * (1 + d / 16), n_threads);  // a 16-deep dot product ~ one exp
  const int64_t panels = ceil_div(m, NR);
  const int64_t m_pad = panels * NR;
  Buf<T> yp(B * m_pad * d), yy(B * m_pad), hp(B * m_pad);
  constexpr int64_t kPanelsPerTask = 16;
  const int64_t ptasks = std::max<int64_t>(1, ceil_div(panels, kPanelsPerTask));
  parallel_for(B * ptasks, n_threads, [&](int64_t t, int) {
    const int64_t b = t / ptasks, p0 = (t % ptasks) * kPanelsPerTask;
    const int64_t p1 = std::min(panels, p0 + kPanelsPerTask);
    pack_y<T>(y + b * m * d, h + b * m, m, d, p0, p1, yp.p + b * m_pad * d, yy.p + b * m_pad, hp.p + b * m_pad);
  });
  const int64_t per = ceil_div(n, Tl::MB);
  const int workers = n_workers(B * per, n_threads);
  Buf<T> tiles(workers * Tl::MB * Tl::NB);
  parallel_for(B * per, n_threads, [&](int64_t t, int w) {
    const int64_t b = t / per, i0 = (t % per) * Tl::MB, i1 = std::min(n, i0 + Tl::MB);
    lse_sqeuclidean_rows<T>(x + b * n * d, yp.p + b * m_pad * d, yy.p + b * m_pad, hp.p + b * m_pad, scale[b],
                            m_pad, d, i0, i1, out + b * n, tiles.p + w * Tl::MB * Tl::NB);
  });
}

// ---------------------------------------------------------------------------
// The fused Sinkhorn step (softmin.h): one pass over the cost computes both
// c-transforms. Rows are taken in blocks of R whose costs sit in a panel
// that fits in L2 (dense: the rows of C themselves; online: a per-worker
// buffer the micro-kernel fills): first each row's log-sum-exp S_i (against
// hg), which gives f_i and so hf_i = log a_i + sg f_i; then, from the cached
// panel, the block's terms of every column's log-sum-exp (against hf) are
// folded into running per-column accumulators. Blocks are grouped: a group
// is a run of consecutive blocks with its own accumulators, processed in
// order by one thread; the groups' accumulators are merged in group order at
// the end. The grouping depends only on (n, m), so results do not depend on
// the number of threads.

constexpr int64_t kGroupsPerProblem = 16;  // column-accumulator groups (parallelism for B = 1)

// Running per-column log-sum-exp of one group: max M and the sum relative to
// shift_of(M) in two levels (MID over kMidBlocks blocks, then SUM), for
// columns [0, mp), mp = m rounded up to whole vectors.
template <typename T>
struct ColAcc {
  T* M;
  T* SUM;
  T* MID;
  int64_t blocks;
};

// Folds rows [0, R) of the panel P (row stride ld) into acc:
// v_ij = hf[i] - s P[i, j] for columns [0, m).
template <typename T>
void accumulate_cols(const T* P, int64_t ld, int64_t R, const T* hf, T s, int64_t m, ColAcc<T>& acc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  constexpr int kG = 4;  // column vectors per sweep over the rows (their sums stay in registers)
  const int64_t full = m / L, tail = m - full * L, nv = full + (tail > 0);
  const V vs = S::set1(s), ninf = S::set1(-kInf<T>);
  auto load = [&](const T* p, int64_t g) { return g < full ? S::loadu(p) : simd::load_partial(p, tail, T(0)); };
  for (int64_t g0 = 0; g0 < nv; g0 += kG) {
    const int q1 = static_cast<int>(std::min<int64_t>(kG, nv - g0));
    V bm[kG], bs[kG], sh[kG];
#pragma GCC unroll 4
    for (int q = 0; q < kG; ++q) bm[q] = ninf, bs[q] = S::zero();
    for (int64_t i = 0; i < R; ++i) {
      const V hv = S::set1(hf[i]);
      const T* c = P + i * ld + g0 * L;
#pragma GCC unroll 4
      for (int q = 0; q < kG; ++q)
        if (q < q1) bm[q] = S::max(S::fnmadd(vs, load(c + q * L, g0 + q), hv), bm[q]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < kG; ++q) {
      if (q >= q1) continue;
      T* M = acc.M + (g0 + q) * L;
      const V Mo = S::load(M), Mn = S::max(bm[q], Mo);
      sh[q] = S::select_eq(Mn, ninf, S::zero(), Mn);
      if (S::any_gt(Mn, Mo)) {  // rescale the sums to the new shift (M = -inf: factor 0)
        const V fac = simd::exp<T>(S::sub(Mo, sh[q]));
        T* SUM = acc.SUM + (g0 + q) * L;
        T* MID = acc.MID + (g0 + q) * L;
        S::store(SUM, S::mul(S::load(SUM), fac));
        S::store(MID, S::mul(S::load(MID), fac));
        S::store(M, Mn);
      }
    }
    for (int64_t i = 0; i < R; ++i) {
      const V hv = S::set1(hf[i]);
      const T* c = P + i * ld + g0 * L;
#pragma GCC unroll 4
      for (int q = 0; q < kG; ++q)
        if (q < q1) bs[q] = simd::add_exp<T>(bs[q], S::sub(S::fnmadd(vs, load(c + q * L, g0 + q), hv), sh[q]));
    }
#pragma GCC unroll 4
    for (int q = 0; q < kG; ++q)
      if (q < q1) S::store(acc.MID + (g0 + q) * L, S::add(S::load(acc.MID + (g0 + q) * L), bs[q]));
  }
  if (++acc.blocks == kMidBlocks) {
    for (int64_t g = 0; g < nv; ++g)
      S::store(acc.SUM + g * L, S::add(S::load(acc.SUM + g * L), S::load(acc.MID + g * L))),
          S::store(acc.MID + g * L, S::zero());
    acc.blocks = 0;
  }
}

// out[j] = log sum over the G groups (in order) of their column sums, for the
// vectors of columns [v0, v1); group k's arrays at M + k * stride etc.
template <typename T>
void merge_cols(const T* M, const T* SUM, const T* MID, int64_t G, int64_t stride, int64_t m, int64_t v0,
                int64_t v1, T* out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const V ninf = S::set1(-kInf<T>);
  for (int64_t g = v0; g < v1; ++g) {
    V Mt = ninf;
    for (int64_t k = 0; k < G; ++k) Mt = S::max(S::load(M + k * stride + g * L), Mt);
    const V sh = S::select_eq(Mt, ninf, S::zero(), Mt);
    V total = S::zero();
    for (int64_t k = 0; k < G; ++k) {
      const V Mk = S::load(M + k * stride + g * L);
      const V part = S::add(S::load(SUM + k * stride + g * L), S::load(MID + k * stride + g * L));
      // A group with M = -inf has no nonzero term (its sum is 0, or NaN, which stays).
      total = S::fmadd(part, simd::exp<T>(S::sub(S::select_eq(Mk, ninf, sh, Mk), sh)), total);
    }
    alignas(64) T shv[L], tv[L];
    S::store(shv, sh);
    S::store(tv, total);
    const int64_t cnt = std::min<int64_t>(L, m - g * L);
    for (int64_t l = 0; l < cnt; ++l) out[g * L + l] = shv[l] + std::log(tv[l]);
  }
}

// Writes the indices b with active[b] != 0 (all when active is null) to out; returns their count.
inline int64_t active_problems(const uint8_t* active, int64_t B, int64_t* out) {
  int64_t k = 0;
  for (int64_t b = 0; b < B; ++b)
    if (!active || active[b]) out[k++] = b;
  return k;
}

// The fused step's driver. row_block(b, i0, i1, w) computes S[b, i0:i1) and
// returns the block's cost panel (rows i0..i1, row stride ld).
template <typename T, typename RowBlock>
void fused_step(int64_t B, int64_t n, int64_t m, int64_t R, const StepArgs<T>& a, T* S, T* Tout, int n_threads,
                int64_t work, RowBlock&& row_block) {
  constexpr int L = Simd<T>::L;
  Buf<int64_t> act(B);  // the active problems (not std::vector: see Buf)
  const int64_t nact = active_problems(a.active, B, act.p);
  if (nact == 0) return;
  if (m == 0 || n == 0) {
    for (int64_t k = 0; k < nact; ++k) {
      const int64_t b = act.p[k];
      for (int64_t i = 0; i < n; ++i) S[b * n + i] = -kInf<T>;
      for (int64_t j = 0; j < m; ++j) Tout[b * m + j] = -kInf<T>;
    }
    return;
  }
  const int64_t blocks = ceil_div(n, R);
  const int64_t per_group = std::max<int64_t>(1, blocks / kGroupsPerProblem);
  const int64_t G = ceil_div(blocks, per_group);
  const int64_t mp = ceil_div(m, L) * L;
  n_threads = threads_for(work / B * nact, n_threads);
  // Accumulators: per active problem, G groups x {M, SUM, MID} x mp.
  Buf<T> acc(nact * G * 3 * mp);
  parallel_for(nact * G, n_threads, [&](int64_t t, int w) {
    const int64_t k = t / G, grp = t % G, b = act.p[k];
    T* base = acc.p + (k * G + grp) * 3 * mp;
    ColAcc<T> ca{base, base + mp, base + 2 * mp, 0};
    for (int64_t j = 0; j < mp; ++j) ca.M[j] = -kInf<T>, ca.SUM[j] = 0, ca.MID[j] = 0;
    alignas(64) T hf[256];
    for (int64_t blk = grp * per_group; blk < std::min(blocks, (grp + 1) * per_group); ++blk) {
      const int64_t i0 = blk * R, i1 = std::min(n, i0 + R);
      int64_t ld = 0;
      const T* P = row_block(b, i0, i1, w, ld);
      const T coef = a.coef[b], sg = a.sg[b];
      for (int64_t i = i0; i < i1; ++i) {
        T f = coef * S[b * n + i];
        if (a.cap) f = std::min(f, a.cap[b * n + i]);
        hf[i - i0] = a.log_a[b * n + i] + sg * f;
      }
      accumulate_cols<T>(P, ld, i1 - i0, hf, sg, m, ca);
    }
  });
  // Merge the groups, in chunks of columns.
  constexpr int64_t kMergeVectors = 64;
  const int64_t nv = mp / L, chunks = ceil_div(nv, kMergeVectors);
  parallel_for(nact * chunks, threads_for(nact * G * mp * 4, n_threads), [&](int64_t t, int) {
    const int64_t k = t / chunks, v0 = (t % chunks) * kMergeVectors, b = act.p[k];
    const T* base = acc.p + k * G * 3 * mp;
    merge_cols<T>(base, base + mp, base + 2 * mp, G, 3 * mp, m, v0, std::min(nv, v0 + kMergeVectors),
                  Tout + b * m);
  });
}

// ---------------------------------------------------------------------------
// Dense step at one temperature (sf == sg): the column pass reuses the row
// pass's exponentials. With v_ij = hg_j - s C_ij, M_i the row max and
// e_ij = exp(v_ij - M_i) (stored in a panel), the column terms are
//   exp(hf_i - s C_ij) = e_ij * exp(hf_i + M_i) * exp(-hg_j),
// so each column sum is sum_i e_ij w_i with scalar weights w_i = exp(hf_i +
// M_i - K) (K a running max per group): one multiply-add per entry instead of
// a max pass and an exp pass. Terms are relative to their rows' maxima, so a
// column whose terms are all negligible within their rows (far from every
// row, or hg_j = -inf) can come out as 0 or below the precision kept here:
// such columns (sum below kReuseFloor) are recomputed exactly, one by one.

template <typename T>
constexpr T kReuseFloor = sizeof(T) == 4 ? T(1e-20) : T(1e-250);

// Row r of the block: S = LSE_j (hg_j - s C_ij) with E_row = exp(v - M), M the
// row max (shift_of). Row sums: float vectors per 2048-element chunk, then double.
template <typename T>
void row_exps(const T* c, const T* hg, T s, int64_t m, T* e_row, T& M_out, T& S_out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t full = m / L * L;
  const V vs = S::set1(s), ninf = S::set1(-kInf<T>);
  auto v_at = [&](int64_t j) { return S::fnmadd(vs, S::loadu(c + j), S::loadu(hg + j)); };
  auto v_tail = [&]() {
    return S::fnmadd(vs, simd::load_partial(c + full, m - full, T(0)), simd::load_partial(hg + full, m - full, -kInf<T>));
  };
  V a0 = ninf, a1 = ninf;
  int64_t j = 0;
  for (; j + 2 * L <= full; j += 2 * L) a0 = S::max(v_at(j), a0), a1 = S::max(v_at(j + L), a1);
  for (; j < full; j += L) a0 = S::max(v_at(j), a0);
  if (full < m) a1 = S::max(v_tail(), a1);
  const T M = shift_of(simd::hmax<T>(S::max(a0, a1)));
  const V sh = S::set1(M);
  double total = 0;
  constexpr int64_t kChunk = 2048;
  for (int64_t j0 = 0; j0 < full; j0 += kChunk) {
    const int64_t j1 = std::min(full, j0 + kChunk);
    V s0 = S::zero(), s1 = S::zero();
    int64_t q = j0;
    for (; q + 2 * L <= j1; q += 2 * L) {
      // The next row (pass 1 streams it from memory) is fetched while this pass computes.
      prefetch<2 * L * sizeof(T)>(c + m + q, 0);
      const V e0 = simd::exp<T>(S::sub(v_at(q), sh)), e1 = simd::exp<T>(S::sub(v_at(q + L), sh));
      S::storeu(e_row + q, e0);
      S::storeu(e_row + q + L, e1);
      s0 = S::add(s0, e0);
      s1 = S::add(s1, e1);
    }
    for (; q < j1; q += L) {
      const V e0 = simd::exp<T>(S::sub(v_at(q), sh));
      S::storeu(e_row + q, e0);
      s0 = S::add(s0, e0);
    }
    total += static_cast<double>(simd::hsum<T>(S::add(s0, s1)));
  }
  if (full < m) {
    alignas(64) T t[L];
    const V e = simd::exp<T>(S::sub(v_tail(), sh));
    S::store(t, e);
    for (int64_t l = 0; l < m - full; ++l) e_row[full + l] = t[l];
    total += static_cast<double>(simd::hsum<T>(e));
  }
  M_out = M;
  S_out = M + static_cast<T>(std::log(total));
}

// acc_j += sum_r E[r, j] w[r] for the block's R rows (E row stride m).
template <typename T>
void accumulate_weighted(const T* E, int64_t R, const T* w, int64_t m, T* acc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L, kG = 4;
  const int64_t full = m / L * L;
  int64_t j = 0;
  for (; j + kG * L <= full; j += kG * L) {
    V s[kG];
#pragma GCC unroll 4
    for (int q = 0; q < kG; ++q) s[q] = S::zero();
    for (int64_t r = 0; r < R; ++r) {
      const V wr = S::set1(w[r]);
#pragma GCC unroll 4
      for (int q = 0; q < kG; ++q) s[q] = S::fmadd(S::loadu(E + r * m + j + q * L), wr, s[q]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < kG; ++q) S::store(acc + j + q * L, S::add(S::load(acc + j + q * L), s[q]));
  }
  for (; j < m; ++j) {  // the rest, scalar
    T t = 0;
    for (int64_t r = 0; r < R; ++r) t += E[r * m + j] * w[r];
    acc[j] += t;
  }
}

template <typename T>
void sinkhorn_step_dense_reuse(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* Sout, T* Tout,
                               int n_threads) {
  constexpr int L = Simd<T>::L;
  Buf<int64_t> act(B);
  const int64_t nact = active_problems(a.active, B, act.p);
  if (nact == 0 || n == 0 || m == 0) return;
  constexpr int64_t kDensePanelBytes = 128 << 10;
  const int64_t R = std::max<int64_t>(1, std::min<int64_t>(256, kDensePanelBytes / (m * sizeof(T))));
  const int64_t blocks = ceil_div(n, R);
  const int64_t per_group = std::max<int64_t>(1, blocks / kGroupsPerProblem);
  const int64_t G = ceil_div(blocks, per_group);
  const int64_t mp = ceil_div(m, L) * L;
  n_threads = threads_for(n * m * nact, n_threads);
  const int workers = n_workers(nact * G, n_threads);
  Buf<T> acc(nact * G * mp), K(nact * G), panels(static_cast<int64_t>(workers) * R * m), hf_all(nact * n);
  parallel_for(nact * G, n_threads, [&](int64_t t, int w) {
    const int64_t k = t / G, grp = t % G, b = act.p[k];
    const T* Cb = C + b * n * m;
    const T s = a.sf[b], coef = a.coef[b];
    T* ac = acc.p + t * mp;
    for (int64_t j = 0; j < mp; ++j) ac[j] = 0;
    T Kg = -kInf<T>;
    T* E = panels.p + static_cast<int64_t>(w) * R * m;
    alignas(64) T Mi[256], wi[256];
    for (int64_t blk = grp * per_group; blk < std::min(blocks, (grp + 1) * per_group); ++blk) {
      const int64_t i0 = blk * R, i1 = std::min(n, i0 + R);
      T Kb = -kInf<T>;
      for (int64_t i = i0; i < i1; ++i) {
        row_exps<T>(Cb + i * m, a.hg + b * m, s, m, E + (i - i0) * m, Mi[i - i0], Sout[b * n + i]);
        T f = coef * Sout[b * n + i];
        if (a.cap) f = std::min(f, a.cap[b * n + i]);
        const T hf = a.log_a[b * n + i] + s * f;
        hf_all.p[k * n + i] = hf;
        wi[i - i0] = hf + Mi[i - i0];  // log weight
        if (wi[i - i0] > Kb) Kb = wi[i - i0];
      }
      if (Kb > Kg) {  // rescale the group's sums to the new reference (none yet: sums are 0)
        const T fac = Kg == -kInf<T> ? T(0) : std::exp(Kg - Kb);
        for (int64_t j = 0; j < mp; ++j) ac[j] *= fac;
        Kg = Kb;
      }
      if (Kg == -kInf<T>) continue;  // no row has weight yet
      for (int64_t r = 0; r < i1 - i0; ++r) wi[r] = std::exp(wi[r] - Kg);  // NaN stays NaN
      accumulate_weighted<T>(E, i1 - i0, wi, m, ac);
    }
    K.p[t] = Kg;
  });
  // Merge the groups; columns below the floor are recomputed exactly from hf (strided, one by one).
  parallel_for(nact, threads_for(nact * G * m * 4, n_threads), [&](int64_t k, int) {
    const int64_t b = act.p[k];
    const T* Cb = C + b * n * m;
    const T* hf = hf_all.p + k * n;
    const T s = a.sf[b];
    T Kt = -kInf<T>;
    for (int64_t g = 0; g < G; ++g) Kt = std::max(Kt, K.p[k * G + g]);
    for (int64_t j = 0; j < m; ++j) {
      T total = 0;
      if (Kt != -kInf<T>)
        for (int64_t g = 0; g < G; ++g)
          if (K.p[k * G + g] != -kInf<T>) total += acc.p[(k * G + g) * mp + j] * std::exp(K.p[k * G + g] - Kt);
      if (total >= kReuseFloor<T> || total != total) {  // NaN passes through
        Tout[b * m + j] = Kt + std::log(total) - a.hg[b * m + j];
        continue;
      }
      T Mx = -kInf<T>;
      for (int64_t i = 0; i < n; ++i) Mx = std::max(Mx, hf[i] - s * Cb[i * m + j]);
      const T sh = shift_of(Mx);
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(hf[i] - s * Cb[i * m + j] - sh));
      Tout[b * m + j] = sh + static_cast<T>(std::log(sum));
    }
  });
}

template <typename T>
void sinkhorn_step_dense_impl(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* S, T* Tout,
                              int n_threads) {
  bool one_temperature = true;
  for (int64_t b = 0; b < B; ++b) one_temperature &= a.sf[b] == a.sg[b];
  if (one_temperature) return sinkhorn_step_dense_reuse<T>(C, a, B, n, m, S, Tout, n_threads);
  // Rows per block: a panel of about kDensePanelBytes (it stays in L2 between the two uses).
  constexpr int64_t kDensePanelBytes = 256 << 10;
  const int64_t R = std::max<int64_t>(1, std::min<int64_t>(256, kDensePanelBytes / (std::max<int64_t>(m, 1) * sizeof(T))));
  fused_step<T>(B, n, m, R, a, S, Tout, n_threads, B * n * m,
                [&](int64_t b, int64_t i0, int64_t i1, int, int64_t& ld) {
                  lse_dense_rows<T>(C + b * n * m, a.hg + b * m, a.sf[b], m, i0, i1, S + b * n);
                  ld = m;
                  return C + b * n * m + i0 * m;
                });
}

// Cost panels of the squared-Euclidean cost for blocks of rows, the provider of the fused step and of
// plan_dot: y packed once per call (with the column vector h of the row reduction), a panel of R x
// m_pad costs per worker thread; rows(b, i0, i1, w, s, lse, ld) fills worker w's panel with the costs
// of rows [i0, i1) of problem b, writes their LSE_j (h_j - s C_ij) to lse[i0..i1) and returns it.
template <typename T>
struct OnlinePanels {
  using Tl = Tiles<T>;
  static constexpr int NR = Tl::NR, MR = Tl::MR;
  static constexpr int64_t kPanelBytes = 1 << 20;  // per worker; also bounds the rows per block
  static constexpr int64_t kPanelsPerTask = 16;    // packing tasks
  const T* x;
  int64_t n, d, m_pad, R;
  Buf<T> yp, yy, hp, panel;

  OnlinePanels(const T* x_, const T* y, const T* h, const uint8_t* active, int64_t B, int64_t n_, int64_t m,
               int64_t d_, int n_threads)
      : x(x_),
        n(n_),
        d(d_),
        m_pad(std::max<int64_t>(1, ceil_div(m, NR)) * NR),
        // Rows per block: whole micro-tiles, a panel of at most kPanelBytes, at most MB.
        R(std::max<int64_t>(MR, std::min<int64_t>(Tl::MB, kPanelBytes / (m_pad * sizeof(T))) / MR * MR)),
        yp(B * m_pad * d),
        yy(B * m_pad),
        hp(B * m_pad),
        panel(static_cast<int64_t>(std::max(1, n_threads)) * rows_alloc() * m_pad) {
    const int64_t panels = ceil_div(m, NR), ptasks = std::max<int64_t>(1, ceil_div(panels, kPanelsPerTask));
    parallel_for(B * ptasks, threads_for(B * m * d * 4, n_threads), [&](int64_t t, int) {
      const int64_t b = t / ptasks, p0 = (t % ptasks) * kPanelsPerTask;
      if (active && !active[b]) return;
      pack_y<T>(y + b * m * d, h + b * m, m, d, p0, std::min(panels, p0 + kPanelsPerTask), yp.p + b * m_pad * d,
                yy.p + b * m_pad, hp.p + b * m_pad);
    });
  }
  int64_t rows_alloc() const { return ceil_div(R, MR) * MR; }  // the micro-kernel writes whole tiles
  const T* rows(int64_t b, int64_t i0, int64_t i1, int w, T s, T* lse, int64_t& ld) {
    T* buf = panel.p + static_cast<int64_t>(w) * rows_alloc() * m_pad;
    lse_sqeuclidean_rows<T, true>(x + b * n * d, yp.p + b * m_pad * d, yy.p + b * m_pad, hp.p + b * m_pad, s,
                                  m_pad, d, i0, i1, lse, buf);
    ld = m_pad;
    return buf;
  }
};

template <typename T>
void sinkhorn_step_sqeuclidean_impl(const T* x, const T* y, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m,
                                    int64_t d, T* S, T* Tout, int n_threads) {
  if (B == 0) return;
  OnlinePanels<T> op(x, y, a.hg, a.active, B, n, m, d, n_threads);
  fused_step<T>(B, n, m, op.R, a, S, Tout, n_threads, B * n * m * (1 + d / 16),
                [&](int64_t b, int64_t i0, int64_t i1, int w, int64_t& ld) {
                  return op.rows(b, i0, i1, w, a.sf[b], S + b * n, ld);
                });
}

// ---------------------------------------------------------------------------
// <P, C> of the plan P_ij = exp(hr_i + hc_j - s C_ij) (softmin.h): rows in
// blocks whose costs come from the same providers as the fused step's; per
// row a vector sum of P_ij C_ij (0 where C = +inf or P = 0), rows added in
// double. The exponent may be positive before convergence: full-range exp.

template <typename T>
double plan_dot_rows(const T* P, int64_t ld, int64_t R, const T* hr, const T* hc, T s, int64_t m) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int L = S::L;
  const int64_t full = m / L * L;
  const V vs = S::set1(s), inf = S::set1(kInf<T>), zero = S::zero();
  double total = 0;
  for (int64_t i = 0; i < R; ++i) {
    const T* c = P + i * ld;
    const V hv = S::set1(hr[i]);
    V acc0 = zero, acc1 = zero;
    auto term = [&](V cv, V hcv) {
      const V e = simd::exp<T, true>(S::add(S::fnmadd(vs, cv, hcv), hv));
      return S::select_eq(cv, inf, zero, S::select_eq(e, zero, zero, S::mul(e, cv)));
    };
    int64_t j = 0;
    for (; j + 2 * L <= full; j += 2 * L) {
      acc0 = S::add(acc0, term(S::loadu(c + j), S::loadu(hc + j)));
      acc1 = S::add(acc1, term(S::loadu(c + j + L), S::loadu(hc + j + L)));
    }
    for (; j < full; j += L) acc0 = S::add(acc0, term(S::loadu(c + j), S::loadu(hc + j)));
    if (j < m)
      acc1 = S::add(acc1, term(simd::load_partial(c + j, m - j, T(0)), simd::load_partial(hc + j, m - j, -kInf<T>)));
    total += static_cast<double>(simd::hsum<T>(S::add(acc0, acc1)));
  }
  return total;
}

template <typename T, typename RowBlock>
void plan_dot_driver(int64_t B, int64_t n, int64_t m, int64_t R, const T* hr, const T* hc, const T* scale, T* out,
                     int n_threads, int64_t work, RowBlock&& row_block) {
  if (B == 0) return;
  const int64_t blocks = ceil_div(n, R);
  Buf<double> part(B * blocks);
  parallel_for(B * blocks, threads_for(work, n_threads), [&](int64_t t, int w) {
    const int64_t b = t / blocks, i0 = (t % blocks) * R, i1 = std::min(n, i0 + R);
    int64_t ld = 0;
    const T* P = row_block(b, i0, i1, w, ld);
    part.p[t] = plan_dot_rows<T>(P, ld, i1 - i0, hr + b * n + i0, hc + b * m, scale[b], m);
  });
  for (int64_t b = 0; b < B; ++b) {  // fixed order: independent of the thread count
    double total = 0;
    for (int64_t k = 0; k < blocks; ++k) total += part.p[b * blocks + k];
    out[b] = static_cast<T>(total);
  }
}

template <typename T>
void plan_dot_dense_impl(const T* C, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n, int64_t m,
                         T* out, int n_threads) {
  const int64_t R = std::max<int64_t>(1, kRowTaskElems / std::max<int64_t>(m, 1));
  plan_dot_driver<T>(B, n, m, R, hr, hc, scale, out, n_threads, B * n * m,
                     [&](int64_t b, int64_t i0, int64_t, int, int64_t& ld) {
                       ld = m;
                       return C + b * n * m + i0 * m;
                     });
}

template <typename T>
void plan_dot_sqeuclidean_impl(const T* x, const T* y, const T* hr, const T* hc, const T* scale, int64_t B,
                               int64_t n, int64_t m, int64_t d, T* out, int n_threads) {
  if (B == 0) return;
  OnlinePanels<T> op(x, y, hc, nullptr, B, n, m, d, n_threads);
  Buf<T> rows_lse(B * n);  // the panels' row log-sum-exps, unused here (this runs once per solve)
  plan_dot_driver<T>(B, n, m, op.R, hr, hc, scale, out, n_threads, B * n * m * (1 + d / 16),
                     [&](int64_t b, int64_t i0, int64_t i1, int w, int64_t& ld) {
                       return op.rows(b, i0, i1, w, scale[b], rows_lse.p + b * n, ld);
                     });
}

}  // namespace

template <typename T>
void lse_dense(const T* C, const T* h, const T* scale, int64_t B, int64_t n, int64_t m, bool transpose, T* out,
               int n_threads) {
  lse_dense_impl<T>(C, h, scale, B, n, m, transpose, out, n_threads);
}

template <typename T>
void lse_sqeuclidean(const T* x, const T* y, const T* h, const T* scale, int64_t B, int64_t n, int64_t m,
                     int64_t d, T* out, int n_threads) {
  lse_sqeuclidean_impl<T>(x, y, h, scale, B, n, m, d, out, n_threads);
}

template <typename T>
void sinkhorn_step_dense(const T* C, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m, T* S, T* Tout,
                         int n_threads) {
  sinkhorn_step_dense_impl<T>(C, a, B, n, m, S, Tout, n_threads);
}

template <typename T>
void sinkhorn_step_sqeuclidean(const T* x, const T* y, const StepArgs<T>& a, int64_t B, int64_t n, int64_t m,
                               int64_t d, T* S, T* Tout, int n_threads) {
  sinkhorn_step_sqeuclidean_impl<T>(x, y, a, B, n, m, d, S, Tout, n_threads);
}

template <typename T>
void plan_dot_dense(const T* C, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n, int64_t m, T* out,
                    int n_threads) {
  plan_dot_dense_impl<T>(C, hr, hc, scale, B, n, m, out, n_threads);
}

template <typename T>
void plan_dot_sqeuclidean(const T* x, const T* y, const T* hr, const T* hc, const T* scale, int64_t B, int64_t n,
                          int64_t m, int64_t d, T* out, int n_threads) {
  plan_dot_sqeuclidean_impl<T>(x, y, hr, hc, scale, B, n, m, d, out, n_threads);
}

template <typename T>
void exp_approx(const T* x, int64_t count, T* out, bool full_range) {
  using S = Simd<T>;
  constexpr int L = S::L;
  int64_t k = 0;
  for (; k + L <= count; k += L)
    S::storeu(out + k, full_range ? simd::exp<T, true>(S::loadu(x + k)) : simd::exp<T, false>(S::loadu(x + k)));
  if (k < count) {
    alignas(64) T t[L];
    const auto v = simd::load_partial(x + k, count - k, T(0));
    S::store(t, full_range ? simd::exp<T, true>(v) : simd::exp<T, false>(v));
    for (int64_t l = 0; l < count - k; ++l) out[k + l] = t[l];
  }
}

template void lse_dense<float>(const float*, const float*, const float*, int64_t, int64_t, int64_t, bool, float*,
                               int);
template void lse_dense<double>(const double*, const double*, const double*, int64_t, int64_t, int64_t, bool,
                                double*, int);
template void lse_sqeuclidean<float>(const float*, const float*, const float*, const float*, int64_t, int64_t,
                                     int64_t, int64_t, float*, int);
template void lse_sqeuclidean<double>(const double*, const double*, const double*, const double*, int64_t,
                                      int64_t, int64_t, int64_t, double*, int);
template void sinkhorn_step_dense<float>(const float*, const StepArgs<float>&, int64_t, int64_t, int64_t, float*,
                                         float*, int);
template void sinkhorn_step_dense<double>(const double*, const StepArgs<double>&, int64_t, int64_t, int64_t,
                                          double*, double*, int);
template void sinkhorn_step_sqeuclidean<float>(const float*, const float*, const StepArgs<float>&, int64_t, int64_t,
                                               int64_t, int64_t, float*, float*, int);
template void sinkhorn_step_sqeuclidean<double>(const double*, const double*, const StepArgs<double>&, int64_t,
                                                int64_t, int64_t, int64_t, double*, double*, int);
template void plan_dot_dense<float>(const float*, const float*, const float*, const float*, int64_t, int64_t,
                                    int64_t, float*, int);
template void plan_dot_dense<double>(const double*, const double*, const double*, const double*, int64_t, int64_t,
                                     int64_t, double*, int);
template void plan_dot_sqeuclidean<float>(const float*, const float*, const float*, const float*, const float*,
                                          int64_t, int64_t, int64_t, int64_t, float*, int);
template void plan_dot_sqeuclidean<double>(const double*, const double*, const double*, const double*,
                                           const double*, int64_t, int64_t, int64_t, int64_t, double*, int);
template void exp_approx<float>(const float*, int64_t, float*, bool);
template void exp_approx<double>(const double*, int64_t, double*, bool);

}  // namespace FASTOT_ISA
}  // namespace fastot
