// Exact linear sum assignment: Jonker-Volgenant (1987) with its three
// initialisation phases (column reduction, reduction transfer, augmenting row
// reduction) followed by Dijkstra shortest augmenting paths on reduced costs.
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
#include <limits>
#include <vector>

namespace fastot {
namespace {

template <typename T>
constexpr T kInf = std::numeric_limits<T>::infinity();

template <typename T>
bool has_invalid_entries(const T* C, int64_t count) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t k = 0; k < count; ++k) {
    const T x = C[k];
    bad |= static_cast<int>((x != x) | (x == -kInf<T>));
  }
  return bad != 0;
}

template <typename T>
class JonkerVolgenant {
 public:
  Status solve(const T* C, int64_t n, int64_t m, int64_t* col4row_out, T* u_out, T* v_out) {
    C_ = C;
    n_ = n;
    m_ = m;
    if (has_invalid_entries(C, n * m)) return Status::invalid;
    col4row_.assign(n, -1);
    row4col_.assign(m, -1);
    v_.assign(m, T(0));
    free_.clear();

    Status st = Status::ok;
    if (n == m) {
      column_reduction();
    } else {
      // Rectangular: v must stay 0 on columns that end unassigned, which
      // column reduction would break; start from v = 0 with every row free.
      for (int32_t i = 0; i < n; ++i) free_.push_back(i);
    }
    for (int pass = 0; pass < 2 && st == Status::ok && !free_.empty(); ++pass)
      st = augmenting_row_reduction();
    for (size_t k = 0; k < free_.size() && st == Status::ok; ++k) st = augment(free_[k]);
    if (st != Status::ok) return st;

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
  void column_reduction() {
    std::vector<T>& colmin = dist_;
    std::vector<int32_t>& argrow = pred_;
    colmin.assign(m_, kInf<T>);
    argrow.assign(m_, -1);
    for (int32_t i = 0; i < n_; ++i) {
      const T* c = row(i);
      T* cm = colmin.data();
      int32_t* ar = argrow.data();
#pragma omp simd
      for (int64_t j = 0; j < m_; ++j) {
        const bool lt = c[j] < cm[j];
        cm[j] = lt ? c[j] : cm[j];
        ar[j] = lt ? i : ar[j];
      }
    }
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
  }

  // One pass of augmenting row reduction over the free rows (an auction-like
  // step: a row takes its best column and lowers that column's v by the gap to
  // its second best). A displaced row is retried at once only while the gap is
  // positive and a step budget lasts: in floating point tiny gaps can otherwise
  // ping-pong for a long time, and the Dijkstra phase finishes the job anyway.
  Status augmenting_row_reduction() {
    const int64_t prev = static_cast<int64_t>(free_.size());
    int64_t k = 0, nfree = 0, retries = 0;
    const int64_t budget = 2 * n_;
    while (k < prev) {
      const int32_t i = free_[k++];
      const T* c = row(i);
      T u1 = kInf<T>, u2 = kInf<T>;
      int32_t j1 = -1, j2 = -1;
      for (int32_t j = 0; j < m_; ++j) {
        const T h = c[j] - v_[j];
        if (h < u2) {
          if (h < u1) {
            u2 = u1;
            j2 = j1;
            u1 = h;
            j1 = j;
          } else {
            u2 = h;
            j2 = j;
          }
        }
      }
      if (!(u1 < kInf<T>)) return Status::infeasible;  // every entry of row i is +inf
      int32_t i0 = row4col_[j1];
      const bool strict = u1 < u2;
      if (strict) {
        if (u2 < kInf<T>) v_[j1] -= u2 - u1;
      } else if (i0 >= 0) {
        j1 = j2;
        i0 = row4col_[j2];
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
      scan_.clear();
      for (int32_t j = 0; j < m_; ++j) {
        if (dist_[j] == mn) {
          if (row4col_[j] < 0) {
            sink = j;
            break;
          }
          scan_.push_back(j);
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
};

}  // namespace

template <typename T>
Status lsa_solve(const T* C, int64_t n, int64_t m, int64_t* col4row, T* u, T* v) {
  thread_local JonkerVolgenant<T> solver;
  return solver.solve(C, n, m, col4row, u, v);
}

template <typename T>
void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u, T* v,
                     int32_t* status, int n_threads) {
  parallel_for(B, n_threads, [&](int64_t b) {
    status[b] = static_cast<int32_t>(
        lsa_solve<T>(C + b * n * m, n, m, col4row + b * n, u + b * n, v + b * m));
  });
}

template Status lsa_solve<float>(const float*, int64_t, int64_t, int64_t*, float*, float*);
template Status lsa_solve<double>(const double*, int64_t, int64_t, int64_t*, double*, double*);
template void lsa_solve_batch<float>(const float*, int64_t, int64_t, int64_t, int64_t*, float*,
                                     float*, int32_t*, int);
template void lsa_solve_batch<double>(const double*, int64_t, int64_t, int64_t, int64_t*, double*,
                                      double*, int32_t*, int);

}  // namespace fastot
