#include "lib/deadline_timer.h"

#include <utility>

#include "absl/time/clock.h"

namespace txfn::internal {

DeadlineTimer::DeadlineTimer() : state_(std::make_shared<State>()) {}

DeadlineTimer::~DeadlineTimer() {
  absl::btree_map<State::Key, std::function<void()>> dropped;  // destroyed without the lock
  {
    MutexLock lock(&state_->mu);
    state_->stop = true;
    dropped.swap(state_->due);
    state_->cv.SignalAll();
  }
  std::thread thread;
  {
    MutexLock lock(&thread_mu_);
    thread = std::move(thread_);
  }
  if (!thread.joinable()) return;
  if (thread.get_id() == std::this_thread::get_id()) {
    thread.detach();  // a callback of ours dropped us: the thread ends when it returns
  } else {
    thread.join();  // after the callback that may be running
  }
}

DeadlineTimer::Handle DeadlineTimer::Schedule(absl::Time at, std::function<void()> callback) {
  if (at == absl::InfiniteFuture()) return Handle{.at = at, .id = 0};
  {
    MutexLock lock(&thread_mu_);
    if (!thread_.joinable()) thread_ = std::thread([state = state_] { Loop(state); });
  }
  // The callback goes in last: from then on it may run, and drop this timer (see the file
  // comment), so nothing after touches `this`. It did (the thread's start, after the
  // insertion): a callback due at once that dropped the timer made this Schedule lock a
  // destroyed mutex (deadline_timer_test segfaulted about 1 run in 30).
  const std::shared_ptr<State> state = state_;
  MutexLock lock(&state->mu);
  const Handle handle{.at = at, .id = state->next_id++};
  auto [it, inserted] = state->due.emplace(State::Key(at, handle.id), std::move(callback));
  if (it == state->due.begin()) {
    ++state->earlier;
    state->cv.Signal();
  }
  return handle;
}

bool DeadlineTimer::Cancel(const Handle& handle) {
  if (handle.id == 0) return false;
  std::function<void()> dropped;  // destroyed without the lock
  MutexLock lock(&state_->mu);
  auto it = state_->due.find(State::Key(handle.at, handle.id));
  if (it == state_->due.end()) return false;
  dropped = std::move(it->second);
  state_->due.erase(it);
  return true;
}

size_t DeadlineTimer::pending() const {
  MutexLock lock(&state_->mu);
  return state_->due.size();
}

void DeadlineTimer::Loop(const std::shared_ptr<State>& state) {
  MutexLock lock(&state->mu);
  while (!state->stop) {
    if (!state->due.empty() && absl::Now() >= state->due.begin()->first.first) {
      std::function<void()> callback = std::move(state->due.begin()->second);
      state->due.erase(state->due.begin());
      state->mu.Unlock();
      callback();
      callback = nullptr;  // what it holds goes before the lock is taken again
      state->mu.Lock();
      continue;
    }
    const absl::Time next =
        state->due.empty() ? absl::InfiniteFuture() : state->due.begin()->first.first;
    const uint64_t seen = state->earlier;
    state->cv.WaitWithDeadline(next, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
      return state->stop || state->earlier != seen ||
             (next != absl::InfiniteFuture() && absl::Now() >= next);
    });
  }
}

}  // namespace txfn::internal
