// lib/remote/task_threads.h — a few threads that run posted tasks in order (internal): where
// the remote side does work that may block (a commit in a run's completion, a runner's
// metadata load) off gRPC's threads.
#ifndef TXFN_LIB_REMOTE_TASK_THREADS_H_
#define TXFN_LIB_REMOTE_TASK_THREADS_H_

#include <algorithm>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "txfn/internal/mutex.h"

namespace txfn::remote_internal {

// Thread safety: Post from any thread. The destructor runs every task posted before it, then
// joins; a task must not destroy its TaskThreads.
class TaskThreads {
 public:
  explicit TaskThreads(int threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~TaskThreads() {
    {
      internal::MutexLock lock(&mu_);
      stopping_ = true;
      cv_.SignalAll();
    }
    for (std::thread& t : threads_) t.join();
  }
  TaskThreads(const TaskThreads&) = delete;
  TaskThreads& operator=(const TaskThreads&) = delete;

  void Post(std::function<void()> task) {
    internal::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
    cv_.Signal();
  }

  // Whether the caller is one of these threads (running a task): the owner must then not be
  // destroyed there, as the destructor joins them.
  bool OnOwnThread() const {
    const std::thread::id self = std::this_thread::get_id();
    return std::any_of(threads_.begin(), threads_.end(),
                       [self](const std::thread& t) { return t.get_id() == self; });
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> task;
      {
        internal::MutexLock lock(&mu_);
        cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping, and nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  internal::Mutex mu_;
  internal::CondVar cv_{&mu_};
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace txfn::remote_internal

#endif  // TXFN_LIB_REMOTE_TASK_THREADS_H_
