// Shared helpers for fastot's torch-free C++ core: status codes and a small
// parallel-for over independent problems.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <type_traits>

#if defined(FASTOT_HAVE_OPENMP)
#include <omp.h>
#endif

namespace fastot {

// Outcome of one solve; the Python layer turns non-ok codes into ValueError.
enum class Status : int {
  ok = 0,
  infeasible = 1,  // no assignment avoids every +inf (forbidden) entry
  invalid = 2,     // the input holds NaN or -inf
};

// Runs fn(t, w) for t in [0, n_tasks) on at most n_threads threads, w in
// [0, n_workers(n_tasks, n_threads)) naming the worker (for per-worker scratch).
// Tasks are handed out one at a time (problems in a batch can differ a lot in
// cost), and the caller's thread works too (w = 0), so n_threads == 1 uses no
// other thread. The others come from a process-wide pool of sleeping workers
// (thread_pool.cpp). fn must not throw.
inline int n_workers(int64_t n_tasks, int n_threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_tasks)));
}

using TaskFn = void (*)(void* ctx, int64_t t, int w);
void pool_run(int64_t n_tasks, int n_threads, TaskFn fn, void* ctx);

template <typename Fn>
void parallel_for(int64_t n_tasks, int n_threads, Fn&& fn) {
  n_threads = n_workers(n_tasks, n_threads);
  if (n_threads == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
#if defined(FASTOT_HAVE_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
  for (int64_t t = 0; t < n_tasks; ++t) fn(t, omp_get_thread_num());
#else
  using F = std::remove_reference_t<Fn>;
  pool_run(n_tasks, n_threads, [](void* ctx, int64_t t, int w) { (*static_cast<F*>(ctx))(t, w); },
           const_cast<void*>(static_cast<const void*>(&fn)));
#endif
}

}  // namespace fastot
