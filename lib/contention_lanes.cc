// Contention lanes (lib/contention_lanes.h).
#include "lib/contention_lanes.h"

#include <utility>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"

namespace txfn::internal {

ContentionLanes::ContentionLanes(absl::Duration memory, size_t max_entries)
    : memory_(memory), max_entries_(max_entries < 1 ? 1 : max_entries) {}

std::shared_ptr<Lane> ContentionLanes::Predicted(uint64_t call_key, absl::Time now) {
  MutexLock lock(&mu_);
  auto it = predictions_.find(call_key);
  if (it == predictions_.end()) return nullptr;
  if (it->second.expires < now) {
    predictions_.erase(it);
    return nullptr;
  }
  auto lane = lanes_.find(it->second.range);
  if (lane == lanes_.end()) return nullptr;
  // The contention lasts while calls queue in the lane: without this, the
  // prediction would lapse precisely because it works (no more conflicts).
  if (lane->second->occupants() > 0) it->second.expires = now + memory_;
  return lane->second;
}

std::shared_ptr<Lane> ContentionLanes::OnConflict(uint64_t call_key, const ReadRange& read,
                                                  absl::Time now) {
  const uint64_t range = absl::HashOf(read.index, read.range.start, read.range.end);
  MutexLock lock(&mu_);
  MakeRoomLocked(now);
  std::shared_ptr<Lane>& lane = lanes_[range];
  if (lane == nullptr) lane = std::make_shared<Lane>();
  predictions_[call_key] = Prediction{.range = range, .expires = now + memory_};
  return lane;
}

void ContentionLanes::MakeRoomLocked(absl::Time now) {
  if (predictions_.size() >= max_entries_) {
    absl::erase_if(predictions_, [now](const auto& p) { return p.second.expires < now; });
    if (predictions_.size() >= max_entries_) predictions_.clear();
  }
  if (lanes_.size() >= max_entries_) {
    // use_count 1: only this map holds it (no call is in or waiting for it).
    absl::erase_if(lanes_, [](const auto& l) { return l.second.use_count() == 1; });
    if (lanes_.size() >= max_entries_) lanes_.clear();  // held lanes live on in their slots
  }
}

size_t ContentionLanes::keys() const {
  MutexLock lock(&mu_);
  return predictions_.size();
}

size_t ContentionLanes::lanes() const {
  MutexLock lock(&mu_);
  return lanes_.size();
}

struct Lane::Waiter {
  explicit Waiter(Mutex* mu) : turn(mu) {}
  CondVar turn;
  bool granted = false;
};

bool Lane::Acquire(absl::Time deadline) {
  MutexLock lock(&mu_);
  if (!held_ && waiters_.empty()) {
    held_ = true;
    return true;
  }
  Waiter me(&mu_);
  waiters_.push_back(Queued{.blocked = &me});
  // Release hands the turn over (held_ stays true) and wakes only us.
  if (me.turn.WaitWithDeadline(deadline,
                               [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return me.granted; })) {
    return true;
  }
  // Not granted (that happens under mu_, which we hold): still queued. Someone holds the turn
  // (waiters are queued only behind a holder), so leaving changes nothing else.
  waiters_.erase(absl::c_find_if(waiters_, [&](const Queued& q) { return q.blocked == &me; }));
  return false;
}

bool Lane::AcquireOrQueue(std::function<void()> on_turn, uint64_t* ticket) {
  MutexLock lock(&mu_);
  if (!held_ && waiters_.empty()) {
    held_ = true;
    return true;
  }
  waiters_.push_back(Queued{.on_turn = std::move(on_turn), .ticket = next_ticket_++});
  if (ticket != nullptr) *ticket = waiters_.back().ticket;
  return false;
}

bool Lane::Withdraw(uint64_t ticket) {
  std::function<void()> dropped;  // destroyed without the lock
  MutexLock lock(&mu_);
  auto it = absl::c_find_if(
      waiters_, [&](const Queued& q) { return q.blocked == nullptr && q.ticket == ticket; });
  if (it == waiters_.end()) return false;
  // Someone holds the turn (waiters are queued only behind a holder): leaving changes
  // nothing else.
  dropped = std::move(it->on_turn);
  waiters_.erase(it);
  return true;
}

void Lane::Release() {
  std::function<void()> on_turn;
  {
    MutexLock lock(&mu_);
    if (waiters_.empty()) {
      held_ = false;
      return;
    }
    Queued next = std::move(waiters_.front());
    waiters_.pop_front();
    if (next.blocked != nullptr) {
      next.blocked->granted = true;
      // Under mu_: the waiter cannot return (and go) before we unlock.
      next.blocked->turn.Signal();
      return;
    }
    on_turn = std::move(next.on_turn);
  }
  on_turn();  // the turn is its caller's now (held_ stays true)
}

size_t Lane::occupants() const {
  MutexLock lock(&mu_);
  return (held_ ? 1 : 0) + waiters_.size();
}

bool LaneSlot::Enter(std::shared_ptr<Lane> lane, absl::Time deadline) {
  if (lane == nullptr || lane == lane_) return true;
  Leave();
  if (!lane->Acquire(deadline)) return false;
  lane_ = std::move(lane);
  return true;
}

void LaneSlot::Leave() {
  if (lane_ == nullptr) return;
  lane_->Release();
  lane_.reset();
}

}  // namespace txfn::internal
