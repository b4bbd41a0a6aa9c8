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

// Runs fn(t) for t in [0, n_tasks) on at most n_threads threads.
// Tasks are handed out one at a time (problems in a batch can differ a lot in
// cost), and the caller's thread works too, so n_threads == 1 spawns nothing.
// fn must not throw.
template <typename Fn>
void parallel_for(int64_t n_tasks, int n_threads, Fn&& fn) {
  n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_tasks)));
  if (n_threads == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) fn(t);
    return;
  }
#if defined(FASTOT_HAVE_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
  for (int64_t t = 0; t < n_tasks; ++t) fn(t);
#else
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t t = next.fetch_add(1); t < n_tasks; t = next.fetch_add(1)) fn(t);
  };
  std::vector<std::thread> pool;
  pool.reserve(n_threads - 1);
  for (int k = 1; k < n_threads; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
#endif
}

}  // namespace fastot
