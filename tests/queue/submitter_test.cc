// Submitter: batching by size and by delay, per shard; acknowledgement only
// after the batch is durable; per-client rate limits with a retry time;
// spilling; idempotency keys; every bad input; controller config kept when
// the controller is gone.
#include "txfn/submitter.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "txfn/blob_store.h"
#include "txfn/in_memory_queue.h"

namespace txfn {
namespace {

using queue_test::CountingQueue;
using queue_test::DrainAll;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

Call MakeCall(std::string client = "c1") {
  Call c;
  c.tenant = "shop";
  c.function = "mail:send";
  c.args = Value::String("hello");
  c.start_after = kT0;
  c.deadline = kT0 + absl::Hours(1);
  c.client = std::move(client);
  return c;
}

class SubmitterTest : public ::testing::Test {
 protected:
  void SetUp() override { Make({}); }
  void Make(SubmitterOptions options, int shards = 1) {
    submitter_.reset();
    queue_ = std::make_unique<CountingQueue>(
        std::make_unique<InMemoryQueue>(InMemoryQueueOptions{.shards = shards}));
    auto s = Submitter::Create(queue_.get(), &blobs_, &clock_, std::move(options));
    ASSERT_TRUE(s.ok()) << s.status();
    submitter_ = *std::move(s);
  }

  VirtualClock clock_{kT0};
  InMemoryBlobStore blobs_;
  std::unique_ptr<CountingQueue> queue_;
  std::unique_ptr<Submitter> submitter_;
};

TEST_F(SubmitterTest, AFullBatchIsOneEnqueueAndCallersAreAckedOnlyThen) {
  Make({.max_batch_calls = 4, .max_batch_delay = absl::Hours(1)});
  std::vector<absl::StatusOr<CallId>> acks;
  std::vector<CallId> ids;
  for (int i = 0; i < 3; ++i) {
    auto id = submitter_->Submit(MakeCall(), [&](absl::StatusOr<CallId> r) { acks.push_back(r); });
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  EXPECT_THAT(acks, SizeIs(0)) << "not durable yet";
  EXPECT_THAT(queue_->batches(), SizeIs(0));
  auto last = submitter_->Submit(MakeCall(), [&](absl::StatusOr<CallId> r) { acks.push_back(r); });
  ASSERT_TRUE(last.ok());
  ids.push_back(*last);
  ASSERT_THAT(queue_->batches(), SizeIs(1));
  EXPECT_THAT(queue_->batches()[0], SizeIs(4));
  ASSERT_THAT(acks, SizeIs(4));
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(acks[i].ok());
    EXPECT_EQ(*acks[i], ids[i]);
  }
  EXPECT_THAT(DrainAll(*queue_, kT0), SizeIs(4));
  EXPECT_EQ(submitter_->stats().batches, 1u);
  EXPECT_EQ(submitter_->stats().enqueued, 4u);
}

TEST_F(SubmitterTest, APartialBatchIsWrittenByTickOnceItsFirstCallWaitedTheDelay) {
  Make({.max_batch_calls = 100, .max_batch_delay = absl::Milliseconds(5)});
  int acked = 0;
  ASSERT_TRUE(submitter_->Submit(MakeCall(), [&](auto) { ++acked; }).ok());
  clock_.Advance(absl::Milliseconds(3));
  ASSERT_TRUE(submitter_->Submit(MakeCall(), [&](auto) { ++acked; }).ok());
  EXPECT_EQ(submitter_->Tick(), kT0 + absl::Milliseconds(5)) << "when the batch is due";
  EXPECT_EQ(acked, 0);
  clock_.Advance(absl::Milliseconds(2));
  EXPECT_EQ(submitter_->Tick(), absl::InfiniteFuture()) << "nothing left";
  EXPECT_EQ(acked, 2);
  EXPECT_THAT(queue_->batches(), SizeIs(1));
}

// The clock set back an hour with a partial batch waiting: Tick writes it (it waited the
// hour, until the clock came back to when the batch began).
TEST_F(SubmitterTest, APartialBatchIsWrittenAfterTheClockIsSetBack) {
  queue_test::SteppedClock clock(kT0 + absl::Hours(1));
  auto s = Submitter::Create(queue_.get(), &blobs_, &clock,
                             {.max_batch_calls = 100, .max_batch_delay = absl::Milliseconds(5)});
  ASSERT_TRUE(s.ok()) << s.status();
  int acked = 0;
  ASSERT_TRUE((*s)->Submit(MakeCall(), [&](auto) { ++acked; }).ok());
  clock.Set(kT0);
  (void)(*s)->Tick();
  EXPECT_EQ(acked, 1);
}

TEST_F(SubmitterTest, BatchesArePerShard) {
  Make({.max_batch_calls = 1000, .max_batch_delay = absl::Hours(1)}, /*shards=*/4);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(submitter_->Submit(MakeCall()).ok());
  submitter_->Flush();
  std::vector<std::vector<Call>> batches = queue_->batches();
  EXPECT_THAT(batches, SizeIs(4));
  size_t total = 0;
  for (const auto& b : batches) {
    total += b.size();
    for (const Call& c : b) EXPECT_EQ(queue_->ShardOf(c.id), queue_->ShardOf(b[0].id));
  }
  EXPECT_EQ(total, 200u);
}

TEST_F(SubmitterTest, EveryBadInputIsInvalidArgumentAndNothingIsEnqueued) {
  struct Case {
    const char* expect;
    std::function<void(Call&)> edit;
  };
  const std::vector<Case> cases = {
      {"quota class", [](Call& c) { c.quota = static_cast<QuotaClass>(2); }},
      {"deadline", [](Call& c) { c.deadline = c.start_after - absl::Seconds(1); }},
      {"args are", [](Call& c) { c.args = Value::Bytes(std::string((16 << 20) + 1, 'x')); }},
      {"version", [](Call& c) { c.id = CallId(1, 1); }},
      {"tenant name", [](Call& c) { c.tenant = "no spaces"; }},
      {"function name", [](Call& c) { c.function = ""; }},
      {"function name", [](Call& c) { c.function = "bad\x01name"; }},
      {"client name", [](Call& c) { c.client = "a client"; }},
      {"criticality", [](Call& c) { c.criticality = static_cast<Criticality>(7); }},
      {"max_attempts", [](Call& c) { c.retry.max_attempts = 1000; }},
  };
  bool called = false;
  for (const Case& tc : cases) {
    Call c = MakeCall();
    tc.edit(c);
    auto r = submitter_->Submit(c, [&](auto) { called = true; });
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << tc.expect;
    EXPECT_THAT(r.status().message(), HasSubstr(tc.expect));
    // A call given without an id is named by what it calls, not by an id it never got; one
    // given with an id, by it.
    if (c.id.IsNil()) {
      const bool names_valid = c.tenant == "shop" && c.function == "mail:send";
      EXPECT_THAT(std::string(r.status().message()),
                  StartsWith(names_valid ? "call of mail:send (tenant shop): " : "call: "))
          << tc.expect;
    } else {
      EXPECT_THAT(std::string(r.status().message()), StartsWith("call " + c.id.ToString() + ": "));
    }
  }
  submitter_->Flush();
  EXPECT_FALSE(called);
  EXPECT_THAT(queue_->batches(), SizeIs(0));
  EXPECT_EQ(blobs_.size(), 0u);
  EXPECT_EQ(submitter_->stats().invalid, cases.size());
}

TEST_F(SubmitterTest, AClientOverItsRateIsToldWhenToRetryAndOthersAreNotAffected) {
  SubmitterConfig config{.version = 1};
  config.clients["spiky"] = {.calls_per_second = 10, .burst = 2};
  Make({.max_batch_calls = 1, .config = config});
  EXPECT_TRUE(submitter_->Submit(MakeCall("spiky")).ok());
  EXPECT_TRUE(submitter_->Submit(MakeCall("spiky")).ok());
  auto r = submitter_->Submit(MakeCall("spiky"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("spiky"));
  std::optional<absl::Time> retry = RetryAfter(r.status());
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(*retry, kT0 + absl::Milliseconds(100));
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(submitter_->Submit(MakeCall("calm")).ok());
  clock_.AdvanceTo(*retry);
  EXPECT_TRUE(submitter_->Submit(MakeCall("spiky")).ok());
  EXPECT_EQ(submitter_->stats().rate_limited, 1u);
  EXPECT_THAT(DrainAll(*queue_, kT0 + absl::Seconds(1)), SizeIs(53));
  EXPECT_FALSE(RetryAfter(absl::InvalidArgumentError("x")).has_value());
}

// A rate of 0 admits the burst, then nothing: no time to retry at, and the message says so
// (it said "retry after inf").
TEST_F(SubmitterTest, AClientWithARateOfZeroIsToldItCanSubmitNothingMore) {
  SubmitterConfig config{.version = 1};
  config.clients["stopped"] = {.calls_per_second = 0, .burst = 1};
  Make({.max_batch_calls = 1, .config = config});
  EXPECT_TRUE(submitter_->Submit(MakeCall("stopped")).ok());
  auto r = submitter_->Submit(MakeCall("stopped"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("can submit nothing more"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("inf")));
  EXPECT_FALSE(RetryAfter(r.status()).has_value());
}

// Every distinct client used to keep its bucket forever (the growth hunt: one per `client`
// string ever seen). A full bucket is the same as a new one, so full buckets go; a client
// still below its burst keeps its bucket and its limit.
TEST_F(SubmitterTest, FullRateBucketsAreDroppedAndSpentOnesKept) {
  SubmitterConfig config{.version = 1};
  config.default_limit = {.calls_per_second = 10, .burst = 3};
  config.clients["stopped"] = {.calls_per_second = 0, .burst = 1};
  Make({.max_batch_calls = 64, .config = config});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(submitter_->Submit(MakeCall("spiky")).ok());
  ASSERT_TRUE(submitter_->Submit(MakeCall("stopped")).ok());
  // 5,000 clients, one call each, the clock a second further every 100 clients: a bucket
  // refills in 100 ms, so only the last hundred are below their burst at each drop.
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(submitter_->Submit(MakeCall(absl::StrCat("client-", i))).ok()) << i;
    if (i % 100 == 99) clock_.AdvanceTo(kT0 + absl::Milliseconds(10 * (i + 1)));
  }
  EXPECT_LT(submitter_->stats().rate_buckets, 2048u);
  // "stopped" spent its burst at a rate of 0: its bucket must have been kept.
  auto r = submitter_->Submit(MakeCall("stopped"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  // "spiky" refilled long ago: dropped or not, it has its whole burst again, and no more.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(submitter_->Submit(MakeCall("spiky")).ok()) << i;
  EXPECT_EQ(submitter_->Submit(MakeCall("spiky")).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// Clients under the default (unlimited) config never need a bucket after their call.
TEST_F(SubmitterTest, UnlimitedClientsKeepNoBuckets) {
  Make({.max_batch_calls = 64});
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(submitter_->Submit(MakeCall(absl::StrCat("client-", i))).ok()) << i;
  }
  EXPECT_LE(submitter_->stats().rate_buckets, 1024u);
  EXPECT_GT(submitter_->stats().rate_buckets, 0u);
}

TEST_F(SubmitterTest, LargeArgumentsAreSpilledAndTheCallPointsAtThem) {
  Make({.max_batch_calls = 1, .spill_threshold_bytes = 1000});
  Call big = MakeCall();
  big.args = Value::Bytes(std::string(5000, 'b'));
  auto id = submitter_->Submit(big);
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(submitter_->Submit(MakeCall()).ok());  // small: inline
  std::vector<Call> got = DrainAll(*queue_, kT0);
  ASSERT_THAT(got, SizeIs(2));
  for (const Call& c : got) {
    if (c.id != *id) {
      EXPECT_TRUE(c.args_blob.empty());
      continue;
    }
    EXPECT_TRUE(c.args.is_null());
    ASSERT_FALSE(c.args_blob.empty());
    auto stored = blobs_.Get(c.args_blob);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(*DecodeBinary(*stored), big.args);
  }
  EXPECT_EQ(submitter_->stats().spilled, 1u);
}

TEST_F(SubmitterTest, AFailedBatchFailsEveryCallerAndDeletesItsSpilledArguments) {
  Make({.max_batch_calls = 2, .spill_threshold_bytes = 10});
  queue_->FailEnqueue(true);
  std::vector<absl::Status> results;
  Call big = MakeCall();
  big.args = Value::Bytes(std::string(100, 'b'));
  ASSERT_TRUE(submitter_->Submit(big, [&](auto r) { results.push_back(r.status()); }).ok());
  EXPECT_EQ(blobs_.size(), 1u);
  ASSERT_TRUE(submitter_->Submit(MakeCall(), [&](auto r) { results.push_back(r.status()); }).ok());
  ASSERT_THAT(results, SizeIs(2));
  for (const absl::Status& s : results) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(blobs_.size(), 0u);
  EXPECT_EQ(submitter_->stats().failed, 2u);
}

// An unknown outcome is not "nothing stored": the call may be durable, so its spilled
// arguments must stay, or it would run without them.
TEST_F(SubmitterTest, AnUnknownEnqueueOutcomeKeepsTheSpilledArguments) {
  Make({.max_batch_calls = 1, .spill_threshold_bytes = 10});
  queue_->LoseEnqueueAnswer(true);
  std::vector<absl::Status> results;
  Call big = MakeCall();
  big.args = Value::Bytes(std::string(100, 'b'));
  ASSERT_TRUE(submitter_->Submit(big, [&](auto r) { results.push_back(r.status()); }).ok());
  ASSERT_THAT(results, SizeIs(1));
  EXPECT_TRUE(IsCommitOutcomeUnknown(results[0])) << results[0];
  EXPECT_EQ(submitter_->stats().failed, 1u);
  std::vector<Call> stored = DrainAll(*queue_, kT0);
  ASSERT_THAT(stored, SizeIs(1));
  auto args = blobs_.Get(stored[0].args_blob);
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(*DecodeBinary(*args), big.args);
}

TEST_F(SubmitterTest, AnIdempotencyKeyMakesAResubmissionADuplicate) {
  Make({.max_batch_calls = 1});
  Call c = MakeCall();
  c.idempotency_key = "order-42";
  auto first = submitter_->Submit(c);
  auto again = submitter_->Submit(c);
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(*first, *again);
  EXPECT_EQ(first->version(), 8);
  Call other_tenant = c;
  other_tenant.tenant = "other";
  auto third = submitter_->Submit(other_tenant);
  ASSERT_TRUE(third.ok());
  EXPECT_NE(*third, *first) << "keys are per tenant";
  EXPECT_THAT(DrainAll(*queue_, kT0), SizeIs(2));
  EXPECT_EQ(submitter_->stats().duplicates, 1u);

  // Twice in one pending batch: one call, both callers answered.
  Make({.max_batch_calls = 10});
  int acked = 0;
  ASSERT_TRUE(submitter_->Submit(c, [&](auto r) { acked += r.ok(); }).ok());
  ASSERT_TRUE(submitter_->Submit(c, [&](auto r) { acked += r.ok(); }).ok());
  submitter_->Flush();
  EXPECT_EQ(acked, 2);
  EXPECT_THAT(DrainAll(*queue_, kT0), SizeIs(1));
}

// A resubmission of a key with other spilled arguments (a client's mistake, or another
// process's call) is a duplicate: the queued call keeps its own arguments (they were written
// over: one blob key per call id), and the duplicate's blob is deleted. Whether the two meet
// in one pending batch or in the queue.
TEST_F(SubmitterTest, ADuplicatesSpilledArgumentsNeverReplaceTheQueuedCalls) {
  for (size_t batch : {1, 2}) {
    SCOPED_TRACE(batch == 1 ? "in the queue" : "in one batch");
    Make({.max_batch_calls = batch, .spill_threshold_bytes = 10});
    Call first = MakeCall();
    first.idempotency_key = "order-7";
    first.args = Value::Bytes(std::string(100, 'a'));
    Call second = first;
    second.args = Value::Bytes(std::string(100, 'b'));
    int acked = 0;
    auto a = submitter_->Submit(first, [&](auto r) { acked += r.ok(); });
    auto b = submitter_->Submit(second, [&](auto r) { acked += r.ok(); });
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
    submitter_->Flush();
    EXPECT_EQ(acked, 2);
    std::vector<Call> stored = DrainAll(*queue_, kT0);
    ASSERT_THAT(stored, SizeIs(1));
    auto args = blobs_.Get(stored[0].args_blob);
    ASSERT_TRUE(args.ok()) << args.status();
    EXPECT_EQ(*DecodeBinary(*args), first.args);
    EXPECT_EQ(blobs_.size(), 1u) << "the duplicate's blob is deleted";
    ASSERT_TRUE(blobs_.Delete(stored[0].args_blob).ok());
  }
}

TEST_F(SubmitterTest, ConfigIsVersionedAndKeptWhenTheControllerIsGone) {
  std::atomic<int> polls{0};
  auto source = [&]() -> absl::StatusOr<SubmitterConfig> {
    if (polls.fetch_add(1) == 0) {
      SubmitterConfig c{.version = 5};
      c.default_limit = {.calls_per_second = 1, .burst = 1};
      return c;
    }
    return absl::UnavailableError("controller gone");
  };
  Make({.max_batch_calls = 1, .config_source = source, .config_poll_interval = absl::Seconds(10)});
  EXPECT_TRUE(submitter_->Submit(MakeCall()).ok());
  EXPECT_EQ(submitter_->stats().config_version, 5u);
  EXPECT_EQ(submitter_->Submit(MakeCall()).status().code(), absl::StatusCode::kResourceExhausted);
  // Half an hour without a controller: the limit still holds.
  for (int i = 0; i < 180; ++i) {
    clock_.Advance(absl::Seconds(10));
    submitter_->Tick();
  }
  EXPECT_GT(submitter_->stats().config_failures, 100u);
  EXPECT_EQ(submitter_->stats().config_version, 5u);
  EXPECT_TRUE(submitter_->Submit(MakeCall()).ok());
  EXPECT_EQ(submitter_->Submit(MakeCall()).status().code(), absl::StatusCode::kResourceExhausted);

  EXPECT_EQ(submitter_->ApplyConfig({.version = 4}).code(), absl::StatusCode::kFailedPrecondition);
  SubmitterConfig bad{.version = 6};
  bad.clients["x"] = {.calls_per_second = -1, .burst = 1};
  auto s = submitter_->ApplyConfig(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("client 'x'"));
  EXPECT_EQ(submitter_->stats().config_version, 5u);
}

TEST(SubmitterCreateTest, RefusesMissingPartsAndBadOptions) {
  InMemoryQueue q;
  VirtualClock clock;
  EXPECT_EQ(Submitter::Create(nullptr, nullptr, &clock, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Submitter::Create(&q, nullptr, nullptr, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Submitter::Create(&q, nullptr, &clock, {.max_batch_calls = 0}).status().message(),
              HasSubstr("max_batch_calls"));
  SubmitterOptions bad;
  bad.config.default_limit.burst = 0;
  EXPECT_THAT(Submitter::Create(&q, nullptr, &clock, bad).status().message(), HasSubstr("burst"));
}

// Many threads submit while another ticks: every accepted call is enqueued
// exactly once and every caller is answered exactly once.
TEST(SubmitterStressTest, ConcurrentSubmittersAreEachAnsweredOnce) {
  InMemoryQueue queue({.shards = 3});
  VirtualClock clock(kT0);
  auto s = Submitter::Create(&queue, nullptr, &clock,
                             {.max_batch_calls = 16, .max_batch_delay = absl::Milliseconds(1)});
  ASSERT_TRUE(s.ok());
  Submitter& submitter = **s;
  constexpr int kThreads = 3;
  constexpr int kPerThread = 400;
  std::atomic<int> answered{0};
  std::atomic<int> failed{0};
  std::atomic<bool> stop{false};
  std::thread ticker([&] {
    while (!stop.load()) {
      clock.Advance(absl::Milliseconds(1));
      submitter.Tick();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Call c = MakeCall("client" + std::to_string(t));
        if (i % 10 == 0) c.idempotency_key = "k" + std::to_string(t) + "-" + std::to_string(i / 20);
        auto r = submitter.Submit(c, [&](absl::StatusOr<CallId> id) {
          ++answered;
          if (!id.ok()) ++failed;
        });
        if (!r.ok()) ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  submitter.Flush();
  stop = true;
  ticker.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(answered.load(), kThreads * kPerThread);
  // Every 20 calls share one idempotency key pair: 2 keys per 20 become 1.
  const size_t distinct = kThreads * (kPerThread - kPerThread / 20);
  EXPECT_EQ(DrainAll(queue, kT0).size(), distinct);
}

}  // namespace
}  // namespace txfn
