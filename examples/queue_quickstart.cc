// The queue side assembled by a host: a durable SqliteQueue, a Submitter in
// front of it, a CallScheduler behind it and a worker, driven by the host's
// own loop on the real clock. Submits reserved and opportunistic calls, runs
// them all, and exits non-zero if any call was lost or ran twice.
//
//   build/examples/queue_quickstart [db-path]
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "txfn/call_scheduler.h"
#include "txfn/clock.h"
#include "txfn/sqlite_queue.h"
#include "txfn/submitter.h"

namespace {

// A worker that "sends mail" on its own thread and reports back.
class MailWorker final : public txfn::Worker {
 public:
  void Run(const txfn::Call& call, Done done) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ran_.insert(call.id).second) ++twice_;
    }
    // Real work would happen here (an RPC, a query); this one finishes at once,
    // on another thread, as an asynchronous worker would.
    std::thread([done = std::move(done)]() mutable {
      std::move(done)(txfn::CallOutcome::Ok(absl::Milliseconds(1)));
    }).detach();
  }
  size_t ran() {
    std::lock_guard<std::mutex> lock(mu_);
    return ran_.size();
  }
  int twice() {
    std::lock_guard<std::mutex> lock(mu_);
    return twice_;
  }

 private:
  std::mutex mu_;
  std::set<txfn::CallId> ran_;
  int twice_ = 0;
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "queue_quickstart: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  std::string path;
  if (argc > 1) {
    path = argv[1];
  } else {
    char pattern[] = "/tmp/txfn_queue_quickstart_XXXXXX";
    if (mkdtemp(pattern) == nullptr) return Fail("mkdtemp");
    dir = pattern;
    path = dir + "/queue.db";
  }
  const txfn::Clock& clock = txfn::RealClock::Get();

  // 1. The durable queue (WAL, synchronous=FULL) and its blob store.
  auto queue = txfn::SqliteQueue::Open(path, {.shards = 2});
  if (!queue.ok()) return Fail(std::string(queue.status().message()));

  // 2. The submitter: validation, per-client rate limits, batching.
  auto submitter = txfn::Submitter::Create(queue->get(), &(*queue)->blob_store(), &clock,
                                           {.max_batch_calls = 32});
  if (!submitter.ok()) return Fail(std::string(submitter.status().message()));

  // 3. The scheduler with one worker of 8 slots, and a quota for "mail:digest".
  txfn::SchedulerConfig config{.version = 1};
  config.functions["mail:digest"] = {.opportunistic_rate = 200};
  auto scheduler = txfn::CallScheduler::Create(
      {.queue = queue->get(), .clock = &clock, .blobs = &(*queue)->blob_store(), .config = config});
  if (!scheduler.ok()) return Fail(std::string(scheduler.status().message()));
  auto worker = std::make_shared<MailWorker>();
  if (!(*scheduler)->AddWorker("mailer", worker, 8).ok()) return Fail("AddWorker");

  // Submit 500 calls: reserved welcome mails, opportunistic digests.
  constexpr int kCalls = 500;
  std::atomic<int> durable{0};
  for (int i = 0; i < kCalls; ++i) {
    const absl::Time now = clock.Now();
    txfn::Call call{
        .tenant = "shop",
        .function = i % 5 == 0 ? "mail:digest" : "mail:welcome",
        .args = txfn::Value::FromObject({{"user", txfn::Value::Int64(i)}}),
        .start_after = now,
        .deadline = now + absl::Hours(1),
        .quota = i % 5 == 0 ? txfn::QuotaClass::kOpportunistic : txfn::QuotaClass::kReserved,
        .client = "signup-service"};
    auto id = (*submitter)->Submit(call, [&](absl::StatusOr<txfn::CallId> r) {
      if (r.ok()) ++durable;
    });
    if (!id.ok()) return Fail(std::string(id.status().message()));
  }
  (*submitter)->Flush();  // or drive Tick() from the loop below
  if (durable != kCalls) return Fail("not every submit was acknowledged");

  // The host's loop: Tick, then wait until the scheduler wants the next
  // Tick (at most 5 ms here, since the worker finishes calls on its own threads).
  const absl::Time give_up = clock.Now() + absl::Seconds(30);
  while ((*scheduler)->stats().acked < kCalls && clock.Now() < give_up) {
    const absl::Time next = (*scheduler)->Tick();
    const absl::Duration wait = std::min(next - clock.Now(), absl::Milliseconds(5));
    if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
  }
  const txfn::SchedulerStats stats = (*scheduler)->stats();
  std::printf("submitted %d, ran %zu, acked %llu, twice %d, batches %llu\n", kCalls, worker->ran(),
              static_cast<unsigned long long>(stats.acked), worker->twice(),
              static_cast<unsigned long long>((*submitter)->stats().batches));
  const bool ok = stats.acked == kCalls && worker->ran() == kCalls && worker->twice() == 0;
  scheduler->reset();
  submitter->reset();
  queue->reset();
  if (!dir.empty()) std::filesystem::remove_all(dir);
  return ok ? 0 : Fail("calls were lost or ran twice");
}
