// Helpers shared by the DurableQueue conformance suites (private to
// txfn::testing).
#ifndef TXFN_LIB_TESTING_QUEUE_TEST_UTIL_H_
#define TXFN_LIB_TESTING_QUEUE_TEST_UTIL_H_

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/call.h"
#include "txfn/durable_queue.h"

namespace txfn::testing::internal {

// A fixed, finite "now" for the tests.
inline const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Makes valid calls with repeatable ids.
class CallMaker {
 public:
  explicit CallMaker(uint64_t seed = 42) : ids_(seed) {}

  Call Make(std::string function, absl::Time start = kT0, absl::Duration window = absl::Hours(1)) {
    Call c;
    c.id = ids_.Next();
    c.tenant = "tenant";
    c.function = std::move(function);
    c.args = Value::FromObject({{"n", Value::Int64(++n_)}});
    c.start_after = start;
    c.deadline = start + window;
    c.client = "client";
    return c;
  }

 private:
  CallIdGenerator ids_;
  int64_t n_ = 0;
};

// Leases from every shard until `max` calls or all shards are drained.
inline std::vector<LeasedCall> LeaseAll(DurableQueue& q, absl::Time now, size_t max = 10'000,
                                        absl::Duration lease = absl::Seconds(30),
                                        const std::vector<std::string>& functions = {}) {
  std::vector<LeasedCall> out;
  for (int s = 0; s < q.shard_count() && out.size() < max; ++s) {
    auto got = q.Lease({.shard = s,
                        .functions = functions,
                        .now = now,
                        .max = max - out.size(),
                        .lease_duration = lease});
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) continue;
    for (auto& c : *got) out.push_back(std::move(c));
  }
  return out;
}

inline absl::Status SettleOne(DurableQueue& q, const Settlement& s, absl::Time now) {
  auto r = q.Settle({&s, 1}, now);
  if (!r.ok()) return r.status();
  return r->at(0);
}

inline std::vector<DeadLetter> AllDeadLetters(DurableQueue& q) {
  auto r = q.ListDeadLetters(CallId(), DurableQueue::kMaxLeaseBatch);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::vector<DeadLetter>{};
}

inline size_t Enqueued(DurableQueue& q, const std::vector<Call>& calls) {
  auto r = q.Enqueue(calls);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : 0;
}

}  // namespace txfn::testing::internal

#endif  // TXFN_LIB_TESTING_QUEUE_TEST_UTIL_H_
