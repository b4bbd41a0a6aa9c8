// Exact linear sum assignment (Jonker-Volgenant family), torch-free.
#pragma once

#include <cstdint>

#include "common.h"

namespace fastot {

// Solves min_{sigma} sum_i C[i, sigma(i)] over injective sigma: rows -> columns
// for one dense row-major problem with n <= m. +inf marks a forbidden pair.
//
//   C        (n, m)  row-major, finite or +inf (NaN / -inf give Status::invalid)
//   col4row  (n,)    out: the column assigned to each row
//   u        (n,)    out: row potentials      } u[i] + v[j] <= C[i, j] for all i, j,
//   v        (m,)    out: column potentials   } equality on assigned pairs, v[j] == 0
//                                               on unassigned columns, v <= 0 when n < m
// so sum(u) + sum(v) == sum_i C[i, col4row[i]] certifies optimality.
template <typename T>
Status lsa_solve(const T* C, int64_t n, int64_t m, int64_t* col4row, T* u, T* v);

// Batched form: B independent problems laid out as (B, n, m), outputs (B, n),
// (B, n), (B, m); status (B,). Problems run in parallel on n_threads threads.
template <typename T>
void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u, T* v,
                     int32_t* status, int n_threads);

}  // namespace fastot
