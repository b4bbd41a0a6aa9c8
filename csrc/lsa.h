// Exact linear sum assignment (Jonker-Volgenant family), torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace fastot {

// lsa_solve (declared per instruction set below) solves
//   min_{sigma} sum_i C[i, sigma(i)] over injective sigma: rows -> columns
// for one dense row-major problem with n <= m. +inf marks a forbidden pair.
//
//   C        (n, m)  row-major, finite or +inf (NaN / -inf give Status::invalid)
//   col4row  (n,)    out: the column assigned to each row
//   u        (n,)    out: row potentials      } u[i] + v[j] <= C[i, j] for all i, j,
//   v        (m,)    out: column potentials   } equality on assigned pairs, v[j] == 0
//                                               on unassigned columns, v <= 0 when n < m
// so sum(u) + sum(v) == sum_i C[i, col4row[i]] certifies optimality.
//
// lsa_solve_batch: B independent problems laid out as (B, n, m), outputs (B, n),
// (B, n), (B, m); status (B,). Problems run in parallel on n_threads threads.
// A failed problem gets col4row = -1 and u = v = NaN.
//
// `isa` picks the compiled copy: one of available_isas(), or "auto" for the
// widest this CPU runs. Results are optimal on every copy; on ties the
// optimal assignment returned may differ between copies.
template <typename T>
void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u, T* v,
                     int32_t* status, int n_threads, const std::string& isa = "auto");

// Instruction-set copies of the kernels that this build holds and this CPU
// runs, widest first; "generic" is always last.
std::vector<std::string> available_isas();

// One copy of the kernels per instruction set, same signatures.
#define FASTOT_DECLARE_ISA(NS)                                                                   \
  namespace NS {                                                                                 \
  template <typename T>                                                                          \
  Status lsa_solve(const T* C, int64_t n, int64_t m, int64_t* col4row, T* u, T* v);              \
  template <typename T>                                                                          \
  void lsa_solve_batch(const T* C, int64_t B, int64_t n, int64_t m, int64_t* col4row, T* u,      \
                       T* v, int32_t* status, int n_threads);                                    \
  }
FASTOT_DECLARE_ISA(generic)
FASTOT_DECLARE_ISA(avx2)
FASTOT_DECLARE_ISA(avx512)
#undef FASTOT_DECLARE_ISA

}  // namespace fastot
