#include "lib/deadline_timer.h"

#include <utility>

#include "absl/time/clock.h"

namespace txfn::internal {

DeadlineTimer::~DeadlineTimer() {
  absl::btree_map<Key, std::function<void()>> dropped;  // destroyed without the lock
  std::thread thread;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    dropped.swap(due_);
    thread = std::move(thread_);
    cv_.SignalAll();
  }
  if (thread.joinable()) thread.join();  // after the callback that may be running
}

DeadlineTimer::Handle DeadlineTimer::Schedule(absl::Time at, std::function<void()> callback) {
  if (at == absl::InfiniteFuture()) return Handle{.at = at, .id = 0};
  MutexLock lock(&mu_);
  const Handle handle{.at = at, .id = next_id_++};
  auto [it, inserted] = due_.emplace(Key(at, handle.id), std::move(callback));
  if (it == due_.begin()) {
    ++earlier_;
    cv_.Signal();
  }
  if (!thread_.joinable() && !stop_) thread_ = std::thread([this] { Loop(); });
  return handle;
}

bool DeadlineTimer::Cancel(const Handle& handle) {
  if (handle.id == 0) return false;
  std::function<void()> dropped;  // destroyed without the lock
  MutexLock lock(&mu_);
  auto it = due_.find(Key(handle.at, handle.id));
  if (it == due_.end()) return false;
  dropped = std::move(it->second);
  due_.erase(it);
  return true;
}

size_t DeadlineTimer::pending() const {
  MutexLock lock(&mu_);
  return due_.size();
}

void DeadlineTimer::Loop() {
  MutexLock lock(&mu_);
  while (!stop_) {
    if (!due_.empty() && absl::Now() >= due_.begin()->first.first) {
      std::function<void()> callback = std::move(due_.begin()->second);
      due_.erase(due_.begin());
      mu_.Unlock();
      callback();
      callback = nullptr;  // what it holds goes before the lock is taken again
      mu_.Lock();
      continue;
    }
    const absl::Time next = due_.empty() ? absl::InfiniteFuture() : due_.begin()->first.first;
    const uint64_t seen = earlier_;
    cv_.WaitWithDeadline(next, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || earlier_ != seen || (next != absl::InfiniteFuture() && absl::Now() >= next);
    });
  }
}

}  // namespace txfn::internal
