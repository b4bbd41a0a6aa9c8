// Shared helpers for fastot's torch-free C++ core: status codes and a small
// parallel-for over independent problems.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

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
// cost), and the caller's thread works too, so n_threads == 1 spawns nothing.
// fn must not throw.
inline int n_workers(int64_t n_tasks, int n_threads) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_tasks)));
}

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
  std::atomic<int64_t> next{0};
  auto worker = [&](int w) {
    for (int64_t t = next.fetch_add(1); t < n_tasks; t = next.fetch_add(1)) fn(t, w);
  };
  std::vector<std::thread> pool;
  pool.reserve(n_threads - 1);
  for (int w = 1; w < n_threads; ++w) pool.emplace_back(worker, w);
  worker(0);
  for (auto& th : pool) th.join();
#endif
}

}  // namespace fastot
