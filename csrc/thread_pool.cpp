// The process-wide worker pool behind parallel_for (common.h). Compiled once,
// without instruction-set flags.
//
// Why a pool: starting and joining a std::thread costs tens of microseconds,
// paid at every kernel call, and a Sinkhorn iteration on a 1024 x 1024 cost
// takes ~0.4 ms. Workers sleep on a condition variable between jobs.
//
// Rules: one job at a time (a second caller, e.g. another Python thread with
// the GIL released, runs its job on its own thread instead of waiting);
// workers are started lazily, up to the largest count asked for; after fork()
// the child gets a new, empty pool (the parent's workers do not exist there,
// and its locks may be held), so torch DataLoader workers can call fastot.
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace fastot {
namespace {

struct Pool {
  std::mutex job_mutex;  // held by the caller for a whole job
  std::mutex m;          // guards the fields below
  std::condition_variable wake, done;
  std::vector<std::thread> workers;
  uint64_t generation = 0;  // bumped per job
  int want = 0;             // workers taking part in the current job (ids 1..want)
  int running = 0;          // of those, still working
  TaskFn call = nullptr;
  void* ctx = nullptr;
  int64_t n_tasks = 0;
  std::atomic<int64_t> next{0};

  void work(int w) {
    for (int64_t t = next.fetch_add(1); t < n_tasks; t = next.fetch_add(1)) call(ctx, t, w);
  }

  void worker_main(int id) {  // id >= 1
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      wake.wait(lock, [&] { return generation != seen && id <= want; });
      seen = generation;
      lock.unlock();
      work(id);
      lock.lock();
      if (--running == 0) done.notify_one();
    }
  }

  void run(int64_t tasks, int n_threads, TaskFn fn, void* c) {
    std::unique_lock<std::mutex> job(job_mutex, std::try_to_lock);
    if (!job.owns_lock()) {  // another job is running: do this one here
      for (int64_t t = 0; t < tasks; ++t) fn(c, t, 0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(m);
      while (static_cast<int>(workers.size()) < n_threads - 1) {
        const int id = static_cast<int>(workers.size()) + 1;
        workers.emplace_back([this, id] { worker_main(id); });
        workers.back().detach();  // never joined: the pool lives until the process ends
      }
      call = fn, ctx = c, n_tasks = tasks;
      next.store(0);
      want = running = n_threads - 1;
      ++generation;
    }
    wake.notify_all();
    work(0);
    std::unique_lock<std::mutex> lock(m);
    done.wait(lock, [&] { return running == 0; });
    want = 0;
  }
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<pid_t> g_pid{0};

Pool& pool() {
  const pid_t pid = getpid();
  Pool* p = g_pool.load();
  if (p && g_pid.load() == pid) return *p;
  // First use in this process (or in a forked child: the old pool is abandoned, never touched).
  Pool* fresh = new Pool();
  if (g_pid.load() == pid && g_pool.load()) {  // another thread of this process won the race
    delete fresh;
    return *g_pool.load();
  }
  g_pool.store(fresh);
  g_pid.store(pid);
  return *fresh;
}

}  // namespace

void pool_run(int64_t n_tasks, int n_threads, TaskFn fn, void* ctx) { pool().run(n_tasks, n_threads, fn, ctx); }

}  // namespace fastot
