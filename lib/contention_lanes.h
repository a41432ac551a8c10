// lib/contention_lanes.h — serialising the retries of contended mutations
// (internal to the engine; not installed).
//
// Optimistic concurrency collapses on a hot document: N calls run at once,
// one commits, N-1 conflict, retry together and conflict again, until the
// retry limit aborts them. The engine instead sends a call that conflicted
// into a lane: a mutex per hot read range of the tenant, so the calls that
// contend on one range run one at a time, each behind the commit that beat
// it. Contention then degrades to serial throughput instead of collapsing.
// A call whose key (function and arguments) conflicted recently goes
// straight to its lane, skipping the attempt that would only lose.
//
//   ContentionLanes lanes;
//   LaneSlot slot;
//   slot.Enter(lanes.Predicted(key, absl::Now()));   // null: run optimistically
//   ... run and commit; on a conflict (ConflictingRead(status) = read):
//   slot.Enter(lanes.OnConflict(key, *read, absl::Now()));  // then retry
//
// Lanes are hints, never needed for correctness (the committer still
// validates every commit): a key's prediction lasts `memory` after the last
// call that found its lane busy, both maps are bounded by `max_entries`, and
// dropping an entry loses nothing.
//
// Thread safety: ContentionLanes is thread-safe. A LaneSlot belongs to one
// call on one thread; it holds at most one lane at a time (entering another
// leaves the first), so calls cannot deadlock on lanes.
#ifndef TXFN_LIB_CONTENTION_LANES_H_
#define TXFN_LIB_CONTENTION_LANES_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "txfn/internal/mutex.h"
#include "txfn/transaction.h"

namespace txfn::internal {

// The calls that contend on one read range take turns, in arrival order: the
// turn is handed to the longest waiter directly (a plain mutex lets a few
// threads barge ahead while the rest wait for hundreds of milliseconds, and
// waking every waiter for each turn costs a context switch per waiter).
class Lane {
 public:
  Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  // Waits for this caller's turn; true once it has it. False if `deadline` came first: then
  // the caller left the queue and holds nothing (a call past its deadline does not run, so
  // waiting on would only hold its thread).
  [[nodiscard]] bool Acquire(absl::Time deadline = absl::InfiniteFuture());
  // Without waiting: takes the turn and returns true if nobody holds or waits
  // for it; otherwise queues `on_turn` and returns false. `on_turn` runs
  // when it is the caller's turn, on the thread whose Release handed it over
  // (so it must not block); it then holds the turn and must Release it.
  // Queued, *ticket (if given) names the waiter for Withdraw.
  [[nodiscard]] bool AcquireOrQueue(std::function<void()> on_turn, uint64_t* ticket = nullptr);
  // Leaves the queue without a turn (an async call at its deadline): true if the waiter of
  // `ticket` was still queued (its on_turn is destroyed here, never run); false if its turn
  // was handed over already.
  [[nodiscard]] bool Withdraw(uint64_t ticket);
  // Ends the turn of the caller holding it, handing it to the oldest waiter.
  void Release();
  // Calls holding or waiting for a turn.
  [[nodiscard]] size_t occupants() const;

 private:
  struct Waiter;
  mutable Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  struct Queued {
    Waiter* blocked = nullptr;      // a caller waiting in Acquire, or
    std::function<void()> on_turn;  // the callback of one that queued
    uint64_t ticket = 0;            // (on_turn's) for Withdraw
  };
  std::deque<Queued> waiters_ ABSL_GUARDED_BY(mu_);  // oldest first
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
};

class ContentionLanes {
 public:
  explicit ContentionLanes(absl::Duration memory = absl::Seconds(1), size_t max_entries = 4096);

  // The lane of the range a call with `call_key` last conflicted on, if that
  // was within `memory` of `now` (extended while the lane is busy); null
  // otherwise.
  [[nodiscard]] std::shared_ptr<Lane> Predicted(uint64_t call_key, absl::Time now);

  // Records that a call with `call_key` conflicted on `read` at `now`;
  // returns the range's lane (made if new).
  [[nodiscard]] std::shared_ptr<Lane> OnConflict(uint64_t call_key, const ReadRange& read,
                                                 absl::Time now);

  // Remembered call keys and lanes (for tests: both stay <= max_entries).
  [[nodiscard]] size_t keys() const;
  [[nodiscard]] size_t lanes() const;

 private:
  struct Prediction {
    uint64_t range = 0;  // the lane's key in lanes_
    absl::Time expires;
  };
  // Makes room for one more entry in each map: drops expired predictions and
  // lanes nobody holds; if a map is still full, forgets all of it (a hint).
  void MakeRoomLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration memory_;
  const size_t max_entries_;
  mutable Mutex mu_;
  absl::flat_hash_map<uint64_t, Prediction> predictions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<Lane>> lanes_ ABSL_GUARDED_BY(mu_);
};

// Holds at most one lane's turn, released at scope end (RAII).
class LaneSlot {
 public:
  LaneSlot() = default;
  LaneSlot(const LaneSlot&) = delete;
  LaneSlot& operator=(const LaneSlot&) = delete;
  ~LaneSlot() { Leave(); }

  // Waits for `lane`'s turn, leaving the lane held before (if another); true once it holds
  // it. False if `deadline` came first (it then holds no lane). Null leaves nothing and
  // enters nothing (true).
  [[nodiscard]] bool Enter(std::shared_ptr<Lane> lane,
                           absl::Time deadline = absl::InfiniteFuture());
  void Leave();
  [[nodiscard]] const Lane* held() const { return lane_.get(); }

 private:
  std::shared_ptr<Lane> lane_;
};

}  // namespace txfn::internal

#endif  // TXFN_LIB_CONTENTION_LANES_H_
