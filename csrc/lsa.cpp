// Exact linear sum assignment: Jonker-Volgenant (1987) with its three
// initialisation phases (column reduction, reduction transfer, augmenting row
// reduction) followed by Dijkstra shortest augmenting paths on reduced costs,
// plus an entropic warm start for square costs whose rows carry large offsets
// (shifted or clustered point clouds), where column reduction alone fails.
//
// Exactness never depends on a heuristic: any finite column potentials give a
// feasible dual after a row reduction, and the Dijkstra phase then reaches the
// optimum; heuristics only change how much work that takes.
//
// Layout choices, all for speed on dense costs:
//  * Only column potentials v are stored; u[i] = C[i, col4row[i]] - v[col4row[i]].
//  * The Dijkstra step keeps dense arrays over all m columns and marks scanned
//    ("ready") columns by v = -inf and dist = +inf, so each relaxation is one
//    branch-free, vectorisable pass over a row of C (no index lists, no gathers).
//  * +inf entries (forbidden pairs) flow through the arithmetic as +inf; a
//    shortest path of length +inf means the problem is infeasible.
#include "lsa.h"

#include <cmath>
#ifdef FASTOT_LSA_STATS
#include <chrono>
#include <cstdio>
#endif
#include <limits>
#include <vector>

// Build with -DFASTOT_LSA_STATS to print per-phase times and work counts.
#ifndef FASTOT_ISA
#define FASTOT_ISA generic
#endif

namespace fastot {
// This file is compiled once per instruction set (CMakeLists.txt); each copy
// lives in its own namespace and lsa_dispatch.cpp picks one at run time.
namespace FASTOT_ISA {
namespace {

template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

template <typename T>
bool has_invalid_entries(const T* C, int64_t count) {
  int64_t bad = 0;
  // !(x > -inf) is true exactly for NaN and -inf: one compare per entry.
#pragma omp simd reduction(+ : bad)
  for (int64_t k = 0; k < count; ++k) bad += !(C[k] > -kInf<T>);
  return bad != 0;
}

// exp(x) for x <= 0 to ~1e-4 relative accuracy, branch-free so loops using it
// vectorise. Only the warm start uses it: its duals are a heuristic that the
// exact phases then correct, so accuracy here never affects the optimum.
inline float exp_nonpositive(float x) {
  // Clamp well above the float32 normal range's end: denormal results would
  // drop the whole loop onto the slow microcoded path.
  x = std::max(x, -80.0f);
  const float t = x * 1.44269504f;  // x * log2(e), in [-115.5, 0]
  const int32_t k = static_cast<int32_t>(t);  // truncation: k >= t
  const float y = (t - static_cast<float>(k)) * 0.69314718f;  // in (-0.7, 0]
  const float p =
      1.0f + y * (1.0f + y * (0.5f + y * (0.16666667f + y * (0.041666668f + y * 0.008333334f))));
  const int32_t bits = (k + 127) << 23;  // 2^k, k in [-115, 0]
  return p * __builtin_bit_cast(float, bits);
}

// Tuning, chosen by counting passes over C and timing on Gaussian and
// shifted clouds (n = 64 .. 2048, d = 2 .. 3072):
//  * the warm start runs when column reduction leaves more than half the
//    rows free: 41% on 2-D Gaussian clouds, where it does not pay; 55-75% on
//    d >= 16 or shifted/clustered clouds, where it cuts augmenting work
//    2-20x. It makes kWarmStartSweeps sweeps from eps = kWarmStartEps0 *
//    (typical spread of a row), shrinking by kWarmStartDecay per sweep;
//  * one pass of augmenting row reduction whose immediate retries are capped
//    at n: more passes or retries cost more row scans than the Dijkstra
//    phase they save once the duals are good.
constexpr double kWarmStartFreeFraction = 0.5;
constexpr int kWarmStartSweeps = 4;
constexpr double kWarmStartEps0 = 0.25;
constexpr double kWarmStartDecay = 0.3;
constexpr int kRowReductionPasses = 1;
constexpr double kRowReductionRetriesPerRow = 1.0;

template <typename T>
class JonkerVolgenant {
 public:
  Status solve(const T* C, int64_t n, int64_t m, int64_t* col4row_out, T* u_out, T* v_out) {
#ifdef FASTOT_LSA_STATS
    lap_ms();
    arr_rows_ = 0;
#endif
    C_ = C;
    n_ = n;
    m_ = m;
    // Square problems validate inside column reduction's pass over C.
    if (n != m && has_invalid_entries(C, n * m)) return Status::invalid;
    col4row_.assign(n, -1);
    row4col_.assign(m, -1);
    v_.assign(m, T(0));
    free_.clear();

    Status st = Status::ok;
    if (n == m) {
      if (!column_reduction()) return Status::invalid;
      // Column reduction fails when rows carry large offsets (a shifted or
      // clustered target): most columns then share a few argmin rows and JV
      // degrades to many long augmenting paths. A handful of cheap
      // entropic (Sinkhorn) sweeps recovers the global dual trend first.
#ifdef FASTOT_LSA_STATS
      std::fprintf(stderr, "colred free=%zu %.2fms ", free_.size(), lap_ms());
#endif
      if (static_cast<double>(free_.size()) > kWarmStartFreeFraction * n) entropic_warm_start();
#ifdef FASTOT_LSA_STATS
      std::fprintf(stderr, "ws %.2fms ", lap_ms());
#endif
    } else {
      // Rectangular: v must stay 0 on columns that end unassigned, which
      // column reduction would break; start from v = 0 with every row free.
      for (int32_t i = 0; i < n; ++i) free_.push_back(i);
    }
    for (int pass = 0; pass < kRowReductionPasses && st == Status::ok && !free_.empty(); ++pass)
      st = augmenting_row_reduction();
#ifdef FASTOT_LSA_STATS
    std::fprintf(stderr, "arr %.2fms ", lap_ms());
    const size_t n_free_after_arr = free_.size();
    relax_calls_ = 0;
#endif
    for (size_t k = 0; k < free_.size() && st == Status::ok; ++k) st = augment(free_[k]);
    if (st != Status::ok) return st;
#ifdef FASTOT_LSA_STATS
    std::fprintf(stderr, "aug %.2fms free_after_arr=%zu relax_calls=%lld arr_rows=%lld\n", lap_ms(),
                 n_free_after_arr, (long long)relax_calls_, (long long)arr_rows_);
#endif

    for (int64_t i = 0; i < n; ++i) {
      const int32_t j = col4row_[i];
      col4row_out[i] = j;
      u_out[i] = C_[i * m_ + j] - v_[j];
    }
    for (int64_t j = 0; j < m; ++j) v_out[j] = v_[j];
    return Status::ok;
  }

 private:
  const T* row(int64_t i) const { return C_ + i * m_; }

  // Square problems only. v[j] = min_i C[i, j]; each row that is the argmin of
  // exactly one column takes it and transfers its slack to that column.
  // Returns false if C holds NaN or -inf (checked in the same pass).
  bool column_reduction() {
    std::vector<T>& colmin = dist_;
    std::vector<int32_t>& argrow = pred_;
    colmin.assign(m_, kInf<T>);
    argrow.assign(m_, -1);
    int64_t bad = 0;
    for (int32_t i = 0; i < n_; ++i) {
      const T* __restrict c = row(i);
      T* __restrict cm = colmin.data();
      int32_t* __restrict ar = argrow.data();
#pragma omp simd reduction(+ : bad)
      for (int64_t j = 0; j < m_; ++j) {
        const T x = c[j];
        bad += !(x > -kInf<T>);
        const bool lt = x < cm[j];
        cm[j] = lt ? x : cm[j];
        ar[j] = lt ? i : ar[j];
      }
    }
    if (bad != 0) return false;
    std::vector<int32_t> matches(n_, 0);
    for (int64_t j = m_ - 1; j >= 0; --j) {
      v_[j] = std::isfinite(colmin[j]) ? colmin[j] : T(0);
      const int32_t i = argrow[j];
      if (i < 0) continue;
      if (matches[i]++ == 0) {
        col4row_[i] = static_cast<int32_t>(j);
        row4col_[j] = i;
      }
    }
    for (int32_t i = 0; i < n_; ++i) {
      if (matches[i] == 0) {
        free_.push_back(i);
      } else if (matches[i] == 1) {
        // Reduction transfer: lower v[j1] by the row's second-best reduced cost.
        const int32_t j1 = col4row_[i];
        const T* c = row(i);
        T mu = kInf<T>;
        for (int64_t j = 0; j < m_; ++j)
          if (j != j1) mu = std::min(mu, c[j] - v_[j]);
        if (mu < kInf<T>) v_[j1] = c[j1] - mu;
      }
    }
    return true;
  }

  // Square problems. A few log-domain Sinkhorn sweeps with a decreasing
  // temperature, in float32 with a fast exp, give column potentials g; then
  // v = g and every row takes its best column under v (u_i = min_j C_ij - v_j,
  // so the duals are feasible and assigned pairs tight whatever g is).
  void entropic_warm_start() {
    std::vector<float> g(m_, 0.0f), csum(m_), z(m_);
    // Temperature from the typical spread of a row's finite costs.
    double spread = 0.0;
    int64_t rows_seen = 0;
    for (int64_t i = 0; i < n_; i += std::max<int64_t>(1, n_ / 16)) {
      const T* c = row(i);
      T lo = kInf<T>, hi = -kInf<T>;
      for (int64_t j = 0; j < m_; ++j) {
        if (c[j] < kInf<T>) {
          lo = std::min(lo, c[j]);
          hi = std::max(hi, c[j]);
        }
      }
      if (hi >= lo) {
        spread += static_cast<double>(hi - lo);
        ++rows_seen;
      }
    }
    if (rows_seen == 0 || !(spread > 0.0)) return;
    float eps = static_cast<float>(kWarmStartEps0 * spread / rows_seen);
    // One sweep per temperature, one pass over C per sweep: row i's update
    //   f_i = softmin_eps_j (C_ij - g_j) = mn_i - eps log s_i,
    //   s_i = sum_j e_ij,  e_ij = exp((mn_i - C_ij + g_j) / eps) <= 1,
    // is followed at once (row still in L1) by its share of the column sums
    //   sum_i exp((f_i - C_ij + g_j) / eps) = sum_i e_ij / s_i,
    // which give g_j <- g_j - eps log(colsum_j) (old g as the stabiliser: the
    // terms never overflow; a column whose sum underflows moves <= eps * 69).
    for (int it = 0; it < kWarmStartSweeps; ++it, eps *= static_cast<float>(kWarmStartDecay)) {
      const float inv_eps = 1.0f / eps;
      std::fill(csum.begin(), csum.end(), 0.0f);
      for (int64_t i = 0; i < n_; ++i) {
        const T* __restrict c = row(i);
        const float* __restrict gj = g.data();
        float* __restrict zj = z.data();
        float* __restrict cs = csum.data();
        float mn = std::numeric_limits<float>::infinity();
#pragma omp simd reduction(min : mn)
        for (int64_t j = 0; j < m_; ++j) {
          zj[j] = static_cast<float>(c[j]) - gj[j];
          mn = zj[j] < mn ? zj[j] : mn;
        }
        if (!std::isfinite(mn)) continue;  // all-forbidden row: infeasible, reported later
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < m_; ++j) {
          zj[j] = exp_nonpositive((mn - zj[j]) * inv_eps);
          sum += zj[j];
        }
        const float inv_sum = 1.0f / sum;
#pragma omp simd
        for (int64_t j = 0; j < m_; ++j) cs[j] += zj[j] * inv_sum;
      }
      for (int64_t j = 0; j < m_; ++j) g[j] -= eps * std::log(std::max(csum[j], 1e-30f));
    }
    // Row reduction under v = g: first come, first served on shared columns.
    std::fill(col4row_.begin(), col4row_.end(), -1);
    std::fill(row4col_.begin(), row4col_.end(), -1);
    free_.clear();
    for (int64_t j = 0; j < m_; ++j) v_[j] = std::isfinite(g[j]) ? static_cast<T>(g[j]) : T(0);
    for (int32_t i = 0; i < n_; ++i) {
      const T* c = row(i);
      T mn = kInf<T>;
      int32_t jmin = -1;
      for (int32_t j = 0; j < m_; ++j) {
        const T h = c[j] - v_[j];
        if (h < mn) {
          mn = h;
          jmin = j;
        }
      }
      if (jmin >= 0 && row4col_[jmin] < 0) {
        col4row_[i] = jmin;
        row4col_[jmin] = i;
      } else {
        free_.push_back(i);
      }
    }
  }

  // min over j in [lo, hi) of C[i, j] - v[j].
  T min_reduced(const T* __restrict c, int64_t lo, int64_t hi) const {
    const T* __restrict v = v_.data();
    T mn = kInf<T>;
#pragma omp simd reduction(min : mn)
    for (int64_t j = lo; j < hi; ++j) {
      const T x = c[j] - v[j];
      mn = x < mn ? x : mn;
    }
    return mn;
  }

  // First column j != skip with C[i, j] - v[j] == value (value must occur).
  int32_t first_reduced_equal(const T* __restrict c, T value, int32_t skip) const {
    constexpr int64_t kChunk = 16;
    const T* __restrict v = v_.data();
    for (int64_t j0 = 0; j0 < m_; j0 += kChunk) {
      const int64_t j1 = std::min<int64_t>(j0 + kChunk, m_);
      int hit = 0;
#pragma omp simd reduction(| : hit)
      for (int64_t j = j0; j < j1; ++j) hit |= (c[j] - v[j]) == value;
      if (!hit) continue;
      for (int64_t j = j0; j < j1; ++j)
        if ((c[j] - v[j]) == value && j != skip) return static_cast<int32_t>(j);
    }
    return -1;
  }

  // One pass of augmenting row reduction over the free rows (an auction-like
  // step: a row takes its best column and lowers that column's v by the gap to
  // its second best). A displaced row is retried at once only while the gap is
  // positive and a step budget lasts: in floating point tiny gaps can otherwise
  // ping-pong for a long time, and the Dijkstra phase finishes the job anyway.
  Status augmenting_row_reduction() {
    const int64_t prev = static_cast<int64_t>(free_.size());
    int64_t k = 0, nfree = 0, retries = 0;
    const int64_t budget = static_cast<int64_t>(kRowReductionRetriesPerRow * n_);
    while (k < prev) {
      const int32_t i = free_[k++];
#ifdef FASTOT_LSA_STATS
      ++arr_rows_;
#endif
      const T* c = row(i);
      // Best and second-best reduced cost of row i (equal on a tie), in three
      // vectorised passes; the row stays in L1 after the first.
      const T u1 = min_reduced(c, 0, m_);
      if (!(u1 < kInf<T>)) return Status::infeasible;  // every entry of row i is +inf
      int32_t j1 = first_reduced_equal(c, u1, -1);
      const T u2 = std::min(min_reduced(c, 0, j1), min_reduced(c, j1 + 1, m_));
      int32_t i0 = row4col_[j1];
      const bool strict = u1 < u2;
      if (strict) {
        if (u2 < kInf<T>) v_[j1] -= u2 - u1;
      } else if (i0 >= 0) {
        // A tie: take the other column at the same reduced cost instead.
        j1 = first_reduced_equal(c, u2, j1);
        i0 = row4col_[j1];
      }
      col4row_[i] = j1;
      row4col_[j1] = i;
      if (i0 >= 0) {
        col4row_[i0] = -1;
        if (strict && u2 < kInf<T> && retries < budget) {
          free_[--k] = i0;
          ++retries;
        } else {
          free_[nfree++] = i0;
        }
      }
    }
    free_.resize(nfree);
    return Status::ok;
  }

  // dist[k] = min(dist[k], C[i, k] - v[k] - h) over all columns, recording the
  // predecessor row; ready columns have v = -inf, so they never change.
  // Returns min_k dist[k], i.e. the next Dijkstra label among unscanned columns.
  T relax(int32_t i, T h) {
#ifdef FASTOT_LSA_STATS
    ++relax_calls_;
#endif
    const T* c = row(i);
    const T* v = v_.data();
    T* d = dist_.data();
    int32_t* p = pred_.data();
    T mn = kInf<T>;
#pragma omp simd reduction(min : mn)
    for (int64_t k = 0; k < m_; ++k) {
      const T x = c[k] - v[k] - h;
      const bool lt = x < d[k];
      const T dk = lt ? x : d[k];
      p[k] = lt ? i : p[k];
      d[k] = dk;
      mn = dk < mn ? dk : mn;
    }
    return mn;
  }

  // Shortest augmenting path from free row f (Dijkstra on reduced costs), then
  // the dual update that keeps reduced costs non-negative, then the flip.
  Status augment(int32_t f) {
    dist_.assign(m_, kInf<T>);
    pred_.assign(m_, f);
    ready_.clear();
    T mn = relax(f, T(0));
    int32_t sink = -1;
    while (true) {
      if (!(mn < kInf<T>)) return Status::infeasible;
      // Columns at the current label; an unassigned one ends the search.
      // Chunks are tested with a vectorisable OR first: hits are rare.
      scan_.clear();
      constexpr int64_t kChunk = 16;
      const T* d = dist_.data();
      for (int64_t j0 = 0; j0 < m_ && sink < 0; j0 += kChunk) {
        const int64_t j1 = std::min<int64_t>(j0 + kChunk, m_);
        int hit = 0;
#pragma omp simd reduction(| : hit)
        for (int64_t j = j0; j < j1; ++j) hit |= d[j] == mn;
        if (!hit) continue;
        for (int64_t j = j0; j < j1; ++j) {
          if (d[j] == mn) {
            if (row4col_[j] < 0) {
              sink = static_cast<int32_t>(j);
              break;
            }
            scan_.push_back(static_cast<int32_t>(j));
          }
        }
      }
      if (sink >= 0) break;
      for (int32_t j : scan_) {
        ready_.push_back({j, mn, v_[j]});
        v_[j] = -kInf<T>;
        dist_[j] = kInf<T>;
      }
      for (size_t k = ready_.size() - scan_.size(); k < ready_.size(); ++k) {
        const Ready r = ready_[k];
        const int32_t i = row4col_[r.j];
        // h = u_i - d_j: the relaxation adds C[i, k] - v[k] - u_i to the label d_j.
        mn = relax(i, C_[int64_t(i) * m_ + r.j] - r.v - r.d);
      }
    }
    for (const Ready& r : ready_) v_[r.j] = r.v + r.d - mn;
    for (int32_t j = sink, i;;) {
      i = pred_[j];
      row4col_[j] = i;
      std::swap(j, col4row_[i]);
      if (i == f) break;
    }
    return Status::ok;
  }

  struct Ready {
    int32_t j;  // column
    T d;        // its shortest-path label
    T v;        // its potential before the search
  };

  const T* C_ = nullptr;
  int64_t n_ = 0, m_ = 0;
  std::vector<int32_t> col4row_, row4col_, free_, pred_, scan_;
  std::vector<T> v_, dist_;
  std::vector<Ready> ready_;
#ifdef FASTOT_LSA_STATS
  int64_t relax_calls_ = 0, arr_rows_ = 0;
  std::chrono::steady_clock::time_point lap_ = std::chrono::steady_clock::now();
  double lap_ms() {
    auto now = std::chrono::steady_clock::now();
    double ms = std::chrono::duration<double, std::milli>(now - lap_).count();
    lap_ = now;
    return ms;
  }
#endif
};

}  // namespace

template <typename T>
Status lsa_solve(const T* C, int64_t n, int64_t m, int64_t* col4row, T* u, T* v) {
  JonkerVolgenant<T> solver;
  return solver.solve(C, n, m, col4row, u, v);
}

template <typename T>
void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u, T* v,
                     int32_t* status, int n_threads) {
  // One workspace per worker, reused across that worker's problems.
  std::vector<JonkerVolgenant<T>> solvers(n_workers(B, n_threads));
  parallel_for(B, n_threads, [&](int64_t b, int w) {
    const Status st = solvers[w].solve(C + b * n * m, n, m, col4row + b * n, u + b * n, v + b * m);
    status[b] = static_cast<int32_t>(st);
    if (st != Status::ok) {  // deterministic outputs for a failed problem
      std::fill(col4row + b * n, col4row + (b + 1) * n, int64_t(-1));
      std::fill(u + b * n, u + (b + 1) * n, std::numeric_limits<T>::quiet_NaN());
      std::fill(v + b * m, v + (b + 1) * m, std::numeric_limits<T>::quiet_NaN());
    }
  });
}

template Status lsa_solve<float>(const float*, int64_t, int64_t, int64_t*, float*, float*);
template Status lsa_solve<double>(const double*, int64_t, int64_t, int64_t*, double*, double*);
template void lsa_solve_batch<float>(const float*, int64_t, int64_t, int64_t, int64_t*, float*,
                                     float*, int32_t*, int);
template void lsa_solve_batch<double>(const double*, int64_t, int64_t, int64_t, int64_t*, double*,
                                      double*, int32_t*, int);

}  // namespace FASTOT_ISA
}  // namespace fastot
