// IsolateScheduler with V8: isolate reuse and eviction, tenant isolation,
// admission control, and the CPU-time and heap limits. Each JS snippet runs
// in a fresh context inside the work item, as the function runner does.
#include "txfn/isolate_scheduler.h"

#include <time.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/internal/mutex.h"
#include "txfn/isolate_customizer.h"
#include "v8-context.h"
#include "v8-exception.h"
#include "v8-isolate.h"
#include "v8-local-handle.h"
#include "v8-locker.h"
#include "v8-primitive.h"
#include "v8-script.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

struct JsResult {
  bool ok = false;
  std::string value;  // the result, or the exception's text
  bool terminated = false;
};

// Runs `source` in a fresh context of the lease's isolate; `keep`, if given, keeps the context.
JsResult RunJs(IsolateLease& lease, const std::string& source,
               v8::Global<v8::Context>* keep = nullptr) {
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope scope(isolate);
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  if (keep != nullptr) keep->Reset(isolate, context);
  v8::Context::Scope context_scope(context);
  v8::TryCatch try_catch(isolate);
  JsResult r;
  v8::Local<v8::String> code =
      v8::String::NewFromUtf8(isolate, source.data(), v8::NewStringType::kNormal,
                              static_cast<int>(source.size()))
          .ToLocalChecked();
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> result;
  if (v8::Script::Compile(context, code).ToLocal(&script) &&
      script->Run(context).ToLocal(&result)) {
    r.ok = true;
    v8::String::Utf8Value text(isolate, result);
    r.value = *text ? *text : "";
    return r;
  }
  r.terminated = try_catch.HasTerminated();
  if (try_catch.HasCaught() && !try_catch.Exception().IsEmpty()) {
    v8::String::Utf8Value text(isolate, try_catch.Exception());
    r.value = *text ? *text : "";
  }
  return r;
}

// Waits until `tenant` has nothing queued or running (its isolate released).
void WaitDone(IsolateScheduler& scheduler, const std::string& tenant) {
  while (scheduler.InFlight(tenant) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// Submits `fn` and waits for it to have run and its isolate to be released.
template <typename Fn>
auto SubmitAndWait(IsolateScheduler& scheduler, const std::string& tenant, Fn fn)
    -> decltype(fn(std::declval<IsolateLease&>())) {
  using R = decltype(fn(std::declval<IsolateLease&>()));
  auto promise = std::make_shared<std::promise<R>>();
  std::future<R> future = promise->get_future();
  absl::Status s = scheduler.Submit(
      tenant, [promise, fn](IsolateLease& lease) { promise->set_value(fn(lease)); });
  EXPECT_TRUE(s.ok()) << s;
  if (!s.ok()) return R{};
  R r = future.get();
  WaitDone(scheduler, tenant);
  return r;
}

// What a request learns about the isolate it ran on.
struct Seen {
  uint64_t isolate_id = 0;
  bool reused = false;
  std::string data_tenant;  // the tenant recorded in the isolate's IsolateData
  JsResult js;
  bool limit_exceeded = false;
  std::string limit;
};

// Records the first tenant an isolate served in its IsolateData.
struct TenantTag : IsolateData {
  explicit TenantTag(std::string t) : tenant(std::move(t)) {}
  std::string tenant;
};

Seen Observe(IsolateLease& lease, const std::string& source = "1 + 1") {
  Seen s;
  s.isolate_id = lease.isolate_id();
  s.reused = lease.reused();
  if (lease.data() == nullptr) lease.set_data(std::make_unique<TenantTag>(lease.tenant()));
  s.data_tenant = static_cast<TenantTag*>(lease.data())->tenant;
  s.js = RunJs(lease, source);
  s.limit_exceeded = lease.limit_exceeded();
  s.limit = lease.exceeded_limit();
  return s;
}

std::unique_ptr<IsolateScheduler> MakeScheduler(IsolateSchedulerOptions options) {
  auto s = IsolateScheduler::Create(std::move(options));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

// A work item that blocks its worker until opened, to fill workers and queue.
class Gate {
 public:
  IsolateScheduler::Work Blocker() {
    return [this](IsolateLease&) {
      internal::MutexLock lock(&mu_);
      ++entered_;
      cv_.SignalAll();
      cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return open_; });
    };
  }
  void WaitEntered(int n) {
    internal::MutexLock lock(&mu_);
    cv_.Wait([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return entered_ >= n; });
  }
  void Open() {
    internal::MutexLock lock(&mu_);
    open_ = true;
    cv_.SignalAll();
  }

 private:
  internal::Mutex mu_;
  internal::CondVar cv_{&mu_};
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
};

TEST(IsolateSchedulerTest, InitializeV8IsIdempotent) {
  EXPECT_TRUE(InitializeV8().ok());
  EXPECT_TRUE(InitializeV8().ok());
  EXPECT_NE(V8Platform(), nullptr);
  EXPECT_TRUE(
      absl::IsFailedPrecondition(InitializeV8(reinterpret_cast<v8::Platform*>(uintptr_t{0x1000}))));
}

TEST(IsolateSchedulerTest, RejectsBadOptions) {
  EXPECT_TRUE(absl::IsInvalidArgument(IsolateScheduler::Create({.workers = -1}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(IsolateScheduler::Create({.queue_capacity = 0}).status()));
}

TEST(IsolateSchedulerTest, ReusesTheTenantsMostRecentlyUsedIsolate) {
  auto scheduler = MakeScheduler({.workers = 1, .max_isolates = 4});
  Seen first = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) { return Observe(l); });
  EXPECT_FALSE(first.reused);
  EXPECT_TRUE(first.js.ok);
  EXPECT_EQ(first.js.value, "2");
  Seen second = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) {
    return Observe(l, "typeof globalThis.leak");  // a fresh context: nothing leaks across
  });
  EXPECT_TRUE(second.reused);
  EXPECT_EQ(second.isolate_id, first.isolate_id);
  EXPECT_EQ(second.data_tenant, "a") << "IsolateData survives between requests";
  EXPECT_EQ(second.js.value, "undefined");
  IsolateSchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.isolates_created, 1u);
  EXPECT_EQ(stats.isolates_reused, 1u);
}

TEST(IsolateSchedulerTest, EvictsTheLeastRecentlyUsedIsolateOfAnotherTenant) {
  auto scheduler = MakeScheduler({.workers = 1, .max_isolates = 2});
  Seen a = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) { return Observe(l); });
  Seen b = SubmitAndWait(*scheduler, "b", [](IsolateLease& l) { return Observe(l); });
  Seen c = SubmitAndWait(*scheduler, "c", [](IsolateLease& l) { return Observe(l); });
  EXPECT_FALSE(c.reused);
  Seen b2 = SubmitAndWait(*scheduler, "b", [](IsolateLease& l) { return Observe(l); });
  EXPECT_TRUE(b2.reused);
  EXPECT_EQ(b2.isolate_id, b.isolate_id);
  Seen a2 = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) { return Observe(l); });
  EXPECT_FALSE(a2.reused) << "a's isolate was evicted for c";
  EXPECT_NE(a2.isolate_id, a.isolate_id);
  IsolateSchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.isolates_created, 4u);
  EXPECT_EQ(stats.isolates_evicted, 2u);  // a for c, then c for a (LRU)
  EXPECT_EQ(stats.isolates_disposed, 2u);
  EXPECT_EQ(stats.live_isolates, 2);
}

TEST(IsolateSchedulerTest, AnIsolateNeverServesTwoTenants) {
  auto scheduler =
      MakeScheduler({.workers = 2, .max_isolates = 3, .max_in_flight_per_tenant = 100});
  internal::Mutex mu;
  std::map<uint64_t, std::string> tenant_of;  // isolate id -> tenant
  std::atomic<int> violations{0};
  std::atomic<int> done{0};
  constexpr int kRequests = 120;
  for (int i = 0; i < kRequests; ++i) {
    const std::string tenant = "t" + std::to_string(i * 7 % 5);
    absl::Status s = scheduler->Submit(tenant, [&](IsolateLease& lease) {
      Seen seen = Observe(lease);
      if (seen.data_tenant != lease.tenant() || !seen.js.ok) violations.fetch_add(1);
      {
        internal::MutexLock lock(&mu);
        auto [it, inserted] = tenant_of.emplace(seen.isolate_id, lease.tenant());
        if (it->second != lease.tenant()) violations.fetch_add(1);
      }
      done.fetch_add(1);
    });
    ASSERT_TRUE(s.ok()) << s;
  }
  scheduler.reset();  // runs everything queued
  EXPECT_EQ(done.load(), kRequests);
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(tenant_of.size(), 3u) << "isolates were evicted and recreated";
}

TEST(IsolateSchedulerTest, FullQueueIsRejectedAtOnce) {
  Gate gate;  // outlives the scheduler, whose worker waits on it
  auto scheduler =
      MakeScheduler({.workers = 1, .queue_capacity = 2, .max_in_flight_per_tenant = 10});
  ASSERT_TRUE(scheduler->Submit("a", gate.Blocker()).ok());
  gate.WaitEntered(1);  // the worker is busy; the queue is empty
  std::atomic<int> ran{0};
  auto count = [&](IsolateLease&) { ran.fetch_add(1); };
  ASSERT_TRUE(scheduler->Submit("a", count).ok());
  ASSERT_TRUE(scheduler->Submit("b", count).ok());
  EXPECT_EQ(scheduler->stats().queue_length, 2u);
  absl::Status s = scheduler->Submit("c", count);
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("queue"));
  EXPECT_EQ(scheduler->stats().rejected_queue_full, 1u);
  gate.Open();
  scheduler.reset();
  EXPECT_EQ(ran.load(), 2) << "the rejected item never ran";
}

TEST(IsolateSchedulerTest, PerTenantCapRejectsOnlyThatTenant) {
  // Default cap: half the workers = 1.
  Gate gate;  // outlives the scheduler, whose worker waits on it
  auto scheduler = MakeScheduler({.workers = 2});
  ASSERT_TRUE(scheduler->Submit("a", gate.Blocker()).ok());
  gate.WaitEntered(1);
  EXPECT_EQ(scheduler->InFlight("a"), 1);
  absl::Status s = scheduler->Submit("a", [](IsolateLease&) {});
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("tenant 'a'"));
  Seen b = SubmitAndWait(*scheduler, "b", [](IsolateLease& l) { return Observe(l); });
  EXPECT_TRUE(b.js.ok) << "another tenant is served meanwhile";
  EXPECT_EQ(scheduler->stats().rejected_tenant_cap, 1u);
  EXPECT_EQ(scheduler->stats().in_flight.at("a"), 1);
  gate.Open();
}

// SubmitAhead (a deploy's check): run while the tenant is at its caps, before its queued work.
TEST(IsolateSchedulerTest, WorkQueuedAheadRunsPastTheTenantsCapsAndQueue) {
  Gate gate;  // outlives the scheduler, whose worker waits on it
  // Running cap 1 (half the workers); in-flight cap 2.
  auto scheduler = MakeScheduler({.workers = 2, .max_in_flight_per_tenant = 2});
  ASSERT_TRUE(scheduler->Submit("a", gate.Blocker()).ok());
  gate.WaitEntered(1);
  std::atomic<int> queued_ran{0};
  ASSERT_TRUE(scheduler->Submit("a", [&](IsolateLease&) { queued_ran.fetch_add(1); }).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(scheduler->Submit("a", [](IsolateLease&) {})));

  struct Ran {
    Seen seen;
    int queued_ran = 0;
    int in_flight = 0;
  };
  auto promise = std::make_shared<std::promise<Ran>>();
  auto future = promise->get_future();
  IsolateScheduler& s = *scheduler;
  EXPECT_TRUE(s.SubmitAhead("a", [promise, &queued_ran, &s](IsolateLease& l) {
                 promise->set_value({Observe(l), queued_ran.load(), s.InFlight("a")});
               }).ok());
  EXPECT_EQ(future.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "waited for the tenant's running work";
  EXPECT_EQ(queued_ran.load(), 0) << "the queued one still waits for the running cap";
  EXPECT_TRUE(absl::IsInvalidArgument(scheduler->SubmitAhead("a", nullptr)));
  gate.Open();
  const Ran ran = future.get();
  EXPECT_TRUE(ran.seen.js.ok);
  EXPECT_EQ(ran.queued_ran, 0) << "ran before the tenant's queued work";
  EXPECT_EQ(ran.in_flight, 3) << "counted in flight, past the tenant's cap of 2";
  scheduler.reset();
  EXPECT_EQ(queued_ran.load(), 1);
}

TEST(IsolateSchedulerTest, WaitsWhenEveryIsolateIsBusy) {
  Gate gate;  // outlives the scheduler, whose worker waits on it
  auto scheduler = MakeScheduler({.workers = 2, .max_isolates = 1, .max_in_flight_per_tenant = 4});
  ASSERT_TRUE(scheduler->Submit("a", gate.Blocker()).ok());
  gate.WaitEntered(1);
  auto promise = std::make_shared<std::promise<Seen>>();
  auto future = promise->get_future();
  ASSERT_TRUE(
      scheduler->Submit("b", [promise](IsolateLease& l) { promise->set_value(Observe(l)); }).ok());
  EXPECT_EQ(future.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout);
  EXPECT_EQ(scheduler->stats().queue_length, 1u);
  gate.Open();
  Seen b = future.get();
  EXPECT_TRUE(b.js.ok);
  EXPECT_EQ(scheduler->stats().isolates_evicted, 1u);
}

int64_t ThreadCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// The default CPU limit with a wall-clock limit far away: on a loaded machine
// the default one (twice the CPU limit) could stop a spin first.
class CpuOnlyLimits : public LimitEnforcer {
 public:
  absl::Duration WallLimit(const std::string& tenant) const override { return absl::Seconds(60); }
};

TEST(IsolateSchedulerTest, InfiniteLoopIsTerminatedAtItsCpuLimitOthersCarryOn) {
  auto scheduler = MakeScheduler(
      {.workers = 2, .max_in_flight_per_tenant = 4, .limits = std::make_shared<CpuOnlyLimits>()});
  struct Looped {
    Seen seen;
    int64_t cpu_ns = 0;
    int good_done_before = 0;
  };
  std::atomic<int> good_done{0};
  auto promise = std::make_shared<std::promise<Looped>>();
  auto future = promise->get_future();
  ASSERT_TRUE(scheduler
                  ->Submit("bad",
                           [&, promise](IsolateLease& l) {
                             Looped r;
                             const int64_t start = ThreadCpuNanos();
                             r.seen = Observe(l, "while (true) {}");
                             r.cpu_ns = ThreadCpuNanos() - start;
                             r.good_done_before = good_done.load();
                             promise->set_value(r);
                           })
                  .ok());
  // Meanwhile another tenant is served on the other worker.
  for (int i = 0; i < 5; ++i) {
    Seen g = SubmitAndWait(*scheduler, "good", [](IsolateLease& l) { return Observe(l); });
    EXPECT_TRUE(g.js.ok);
    good_done.fetch_add(1);
  }
  Looped bad = future.get();
  WaitDone(*scheduler, "bad");
  EXPECT_EQ(bad.good_done_before, 5) << "the other tenant was served while the loop ran";
  EXPECT_FALSE(bad.seen.js.ok);
  EXPECT_TRUE(bad.seen.js.terminated);
  EXPECT_TRUE(bad.seen.limit_exceeded);
  EXPECT_EQ(bad.seen.limit, "cpu time");
  EXPECT_GE(bad.cpu_ns, 1000000000);
  EXPECT_LT(bad.cpu_ns, 1100000000) << "terminated within the CPU limit + 100 ms";
  EXPECT_EQ(scheduler->stats().terminated_cpu, 1u);

  // The stopped request's isolate was disposed of: the tenant gets a new one.
  Seen again = SubmitAndWait(*scheduler, "bad", [](IsolateLease& l) { return Observe(l, "6*7"); });
  EXPECT_FALSE(again.reused);
  EXPECT_NE(again.isolate_id, bad.seen.isolate_id);
  EXPECT_TRUE(again.js.ok);
  EXPECT_EQ(again.js.value, "42");
  EXPECT_FALSE(again.limit_exceeded);
}

// A tighter CPU limit for one tenant only.
class TightLimits : public LimitEnforcer {
 public:
  absl::Duration CpuLimit(const std::string& tenant) const override {
    return tenant == "tight" ? absl::Milliseconds(50) : absl::Seconds(1);
  }
  size_t HeapLimitBytes(const std::string& tenant) const override {
    return tenant == "tight" ? size_t{32} << 20 : size_t{64} << 20;
  }
  absl::Duration WallLimit(const std::string& tenant) const override { return absl::Seconds(60); }
};

// A request that waits uses no CPU: its wall-clock limit stops it, and the
// scheduler counts it.
TEST(IsolateSchedulerTest, AWaitingRequestIsStoppedAtItsWallClockLimit) {
  class WallLimits : public LimitEnforcer {
   public:
    absl::Duration WallLimit(const std::string&) const override { return absl::Milliseconds(50); }
  };
  auto scheduler = MakeScheduler({.workers = 1, .limits = std::make_shared<WallLimits>()});
  Seen waited = SubmitAndWait(*scheduler, "sleepy", [](IsolateLease& l) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // no CPU spent
    return Observe(l, "1");
  });
  EXPECT_TRUE(waited.limit_exceeded);
  EXPECT_EQ(waited.limit, "wall time");
  EXPECT_EQ(scheduler->stats().terminated_wall, 1u);
  EXPECT_EQ(scheduler->stats().terminated_cpu, 0u);
}

TEST(IsolateSchedulerTest, LimitEnforcerIsPerTenant) {
  auto scheduler = MakeScheduler({.workers = 1, .limits = std::make_shared<TightLimits>()});
  Seen tight =
      SubmitAndWait(*scheduler, "tight", [](IsolateLease& l) { return Observe(l, "while(1){}"); });
  EXPECT_EQ(tight.limit, "cpu time");
  Seen loose = SubmitAndWait(*scheduler, "loose", [](IsolateLease& l) {
    return Observe(l, "let x = 0; for (let i = 0; i < 1e6; ++i) x += i; x > 0");
  });
  EXPECT_TRUE(loose.js.ok);
  EXPECT_FALSE(loose.limit_exceeded);
}

// Requests that straddle a tight CPU limit race the watchdog: a termination
// that lands after the JS returned must not leak into the isolate's next
// request, of this tenant or (via the same worker) another.
TEST(IsolateSchedulerTest, TerminationsNeverLeakIntoLaterRequests) {
  auto scheduler = MakeScheduler({.workers = 2,
                                  .max_isolates = 3,
                                  .max_in_flight_per_tenant = 200,
                                  .limits = std::make_shared<TightLimits>()});
  std::atomic<int> spurious{0};
  std::atomic<int> terminated{0};
  std::atomic<int> done{0};
  constexpr int kRequests = 80;
  for (int i = 0; i < kRequests; ++i) {
    // Kinds: 0 runs forever (always terminated), 1 loops for about the
    // 50 ms limit (either outcome; the racy one), 2 and 3 are quick (must
    // always succeed), on tight's isolates or other tenants'.
    const int kind = i % 4;
    std::string source = "[1, 2, 3].map(v => v * 2).join()";
    if (kind == 0) source = "while (true) {}";
    if (kind == 1) {
      source = "const end = Date.now() + " + std::to_string(40 + i % 20) +
               "; while (Date.now() < end) {} '2,4,6'";
    }
    const std::string tenant = kind == 3 ? "t" + std::to_string(i % 3) : "tight";
    ASSERT_TRUE(scheduler
                    ->Submit(tenant,
                             [&, kind, source](IsolateLease& l) {
                               JsResult r = RunJs(l, source);
                               const bool good = r.ok && r.value == "2,4,6";
                               // The wall limit (2 x CPU) may win on a starved worker.
                               if (kind == 0 && (r.ok || !l.limit_exceeded())) {
                                 spurious.fetch_add(1);
                               }
                               if (kind == 1 && !good && !l.limit_exceeded()) {
                                 spurious.fetch_add(1);
                               }
                               if (kind >= 2 && (!good || l.limit_exceeded())) {
                                 spurious.fetch_add(1);
                               }
                               if (!r.ok) terminated.fetch_add(1);
                               done.fetch_add(1);
                             })
                    .ok());
  }
  scheduler.reset();
  EXPECT_EQ(done.load(), kRequests);
  EXPECT_EQ(spurious.load(), 0);
  EXPECT_GT(terminated.load(), 0);
}

TEST(IsolateSchedulerTest, AllocationBombHitsTheHeapLimitAndTheIsolateIsDisposed) {
  auto scheduler = MakeScheduler({.workers = 2, .max_in_flight_per_tenant = 4});
  Seen bomb = SubmitAndWait(*scheduler, "bomb", [](IsolateLease& l) {
    return Observe(l, "let a = []; while (true) a.push(new Array(1e6).fill(1));");
  });
  EXPECT_FALSE(bomb.js.ok);
  EXPECT_TRUE(bomb.js.terminated);
  EXPECT_TRUE(bomb.limit_exceeded);
  EXPECT_EQ(bomb.limit, "heap");
  IsolateSchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.terminated_heap, 1u);
  EXPECT_EQ(stats.isolates_disposed, 1u);
  EXPECT_EQ(stats.live_isolates, 0);

  // The process keeps serving, the tenant on a new isolate.
  Seen next = SubmitAndWait(*scheduler, "bomb", [](IsolateLease& l) { return Observe(l); });
  EXPECT_TRUE(next.js.ok);
  EXPECT_FALSE(next.reused);
  EXPECT_NE(next.isolate_id, bomb.isolate_id);
  Seen other = SubmitAndWait(*scheduler, "other", [](IsolateLease& l) { return Observe(l); });
  EXPECT_TRUE(other.js.ok);
}

TEST(IsolateSchedulerTest, DeepRecursionIsARangeErrorAndTheIsolateStaysUsable) {
  auto scheduler = MakeScheduler({.workers = 1});
  Seen deep = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) {
    return Observe(l, "function f(n) { return f(n + 1) + 1; } f(0)");
  });
  EXPECT_FALSE(deep.js.ok);
  EXPECT_FALSE(deep.js.terminated);
  EXPECT_THAT(deep.js.value, HasSubstr("RangeError"));
  EXPECT_FALSE(deep.limit_exceeded);
  Seen next = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) { return Observe(l, "'ok'"); });
  EXPECT_TRUE(next.reused);
  EXPECT_EQ(next.isolate_id, deep.isolate_id);
  EXPECT_EQ(next.js.value, "ok");
}

TEST(IsolateSchedulerTest, DiscardDisposesTheIsolateAfterTheItem) {
  auto scheduler = MakeScheduler({.workers = 1});
  Seen first = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) {
    l.Discard();
    return Observe(l);
  });
  Seen second = SubmitAndWait(*scheduler, "a", [](IsolateLease& l) { return Observe(l); });
  EXPECT_FALSE(second.reused);
  EXPECT_NE(second.isolate_id, first.isolate_id);
  EXPECT_EQ(scheduler->stats().isolates_disposed, 1u);
}

TEST(IsolateSchedulerTest, DestructionRunsQueuedItemsAndDestroysIsolateData) {
  std::atomic<int> ran{0};
  std::atomic<int> destroyed{0};
  struct Counted : IsolateData {
    explicit Counted(std::atomic<int>* d) : destroyed(d) {}
    ~Counted() override { destroyed->fetch_add(1); }
    std::atomic<int>* destroyed;
  };
  {
    auto scheduler = MakeScheduler({.workers = 1, .max_in_flight_per_tenant = 10});
    for (int i = 0; i < 6; ++i) {
      ASSERT_TRUE(scheduler
                      ->Submit(i % 2 ? "a" : "b",
                               [&](IsolateLease& l) {
                                 if (l.data() == nullptr) {
                                   l.set_data(std::make_unique<Counted>(&destroyed));
                                 }
                                 ran.fetch_add(1);
                               })
                      .ok());
    }
  }
  EXPECT_EQ(ran.load(), 6);
  EXPECT_EQ(destroyed.load(), 2) << "one IsolateData per isolate, destroyed with it";
}

}  // namespace
}  // namespace txfn

namespace txfn {
namespace {

// The memory budget bounds the live isolates by what they take (measured
// when each goes idle): with 40 tenants and room for about a dozen, the
// least recently used are evicted and the total stays near the budget.
TEST(IsolateSchedulerTest, MemoryBudgetBoundsLiveIsolates) {
  constexpr size_t kBudget = size_t{16} << 20;
  auto scheduler = MakeScheduler(
      {.workers = 2, .max_isolates = 100, .isolate_memory_budget = kBudget, .spare_isolates = 0});
  for (int i = 0; i < 40; ++i) {
    Seen s = SubmitAndWait(*scheduler, "t" + std::to_string(i),
                           [](IsolateLease& l) { return Observe(l, "[1, 2, 3].join()"); });
    ASSERT_TRUE(s.js.ok);
  }
  WaitDone(*scheduler, "t39");
  IsolateSchedulerStats stats = scheduler->stats();
  EXPECT_GT(stats.isolates_evicted_for_memory, 0u);
  EXPECT_LT(stats.live_isolates, 40);
  EXPECT_LE(stats.isolate_bytes, kBudget);
  EXPECT_GT(stats.isolate_bytes, 0u);
}

// An isolate's IsolateData keeping a context (and what its JavaScript made) alive after the
// request, as private fields a request stamps on a hardened context's frozen intrinsics do.
struct KeptContext : IsolateData {
  v8::Global<v8::Context> context;
};

// What idle isolates keep is measured after a full GC: one with over half its heap limit still
// live (no request runs) is disposed of rather than kept; garbage, however much, is not live.
TEST(IsolateSchedulerTest, AnIdleIsolateHoldingOverHalfItsHeapLimitIsDisposedOf) {
  // Heap and ArrayBuffer limits 64 MiB (the defaults).
  auto scheduler = MakeScheduler({.workers = 1, .spare_isolates = 0});
  // Makes `mib` MiB of doubles (or an ArrayBuffer), kept alive after the request or not.
  auto allocate = [](int mib, bool keep, bool buffer = false) {
    return [mib, keep, buffer](IsolateLease& l) {
      Seen s;
      s.isolate_id = l.isolate_id();
      s.reused = l.reused();
      auto kept = std::make_unique<KeptContext>();
      const std::string made = buffer ? "new ArrayBuffer(" + std::to_string(mib << 20) + ")"
                                      : "new Array(" + std::to_string(mib << 17) + ").fill(0.5)";
      s.js = RunJs(l, "globalThis.made = " + made + "; 1", keep ? &kept->context : nullptr);
      l.set_data(std::move(kept));
      s.limit_exceeded = l.limit_exceeded();
      return s;
    };
  };
  Seen garbage = SubmitAndWait(*scheduler, "t", allocate(40, false));
  ASSERT_TRUE(garbage.js.ok) << garbage.js.value;
  Seen small = SubmitAndWait(*scheduler, "t", allocate(4, true));
  ASSERT_TRUE(small.js.ok) << small.js.value;
  EXPECT_EQ(small.isolate_id, garbage.isolate_id) << "40 MiB of garbage is no reason to dispose";
  Seen large = SubmitAndWait(*scheduler, "t", allocate(40, true));
  ASSERT_TRUE(large.js.ok) << large.js.value;
  EXPECT_FALSE(large.limit_exceeded);
  EXPECT_EQ(large.isolate_id, garbage.isolate_id) << "kept 4 MiB";
  Seen after = SubmitAndWait(*scheduler, "t", allocate(40, false, /*buffer=*/true));
  EXPECT_FALSE(after.reused);
  EXPECT_NE(after.isolate_id, large.isolate_id) << "40 MiB kept by an idle isolate";
  Seen buffer = SubmitAndWait(*scheduler, "t", allocate(40, true, /*buffer=*/true));
  ASSERT_TRUE(buffer.js.ok) << buffer.js.value;
  EXPECT_EQ(buffer.isolate_id, after.isolate_id) << "a 40 MiB ArrayBuffer of garbage before";
  Seen last = SubmitAndWait(*scheduler, "t", allocate(0, false));
  EXPECT_NE(last.isolate_id, buffer.isolate_id) << "a 40 MiB ArrayBuffer kept by an idle isolate";
  IsolateSchedulerStats stats = scheduler->stats();
  EXPECT_EQ(stats.isolates_disposed_retaining, 2u);
  EXPECT_EQ(stats.isolates_disposed, 2u);
  EXPECT_EQ(stats.terminated_heap, 0u);
}

// External memory V8 was told of (the runner's Intl objects: ICU memory the heap's size does not
// show) makes the idle full GC too, once it grew past idle_trim_bytes since the last one.
TEST(IsolateSchedulerTest, ExternalMemoryGrowthMakesTheIdleFullGc) {
  std::atomic<int> full_gcs{0};  // outlives the scheduler and its isolates
  auto scheduler = MakeScheduler({.workers = 1, .spare_isolates = 0});  // idle_trim_bytes 8 MiB
  struct Counting : IsolateData {};
  auto tell = [&full_gcs](int mib) {
    return [&full_gcs, mib](IsolateLease& l) {
      if (l.data() == nullptr) {
        l.isolate()->AddGCEpilogueCallback(
            [](v8::Isolate*, v8::GCType, v8::GCCallbackFlags, void* data) {
              static_cast<std::atomic<int>*>(data)->fetch_add(1);
            },
            &full_gcs, v8::kGCTypeMarkSweepCompact);
        l.set_data(std::make_unique<Counting>());
      }
      l.isolate()->AdjustAmountOfExternalAllocatedMemory(int64_t{mib} << 20);
      return l.isolate_id();
    };
  };
  const uint64_t isolate = SubmitAndWait(*scheduler, "t", tell(1));
  const int after_small = full_gcs.load();
  EXPECT_EQ(SubmitAndWait(*scheduler, "t", tell(16)), isolate);
  const int after_large = full_gcs.load();
  EXPECT_GT(after_large, after_small) << "16 MiB more external memory, no idle full GC";
  EXPECT_EQ(SubmitAndWait(*scheduler, "t", tell(1)), isolate);
  EXPECT_EQ(full_gcs.load(), after_large) << "1 MiB since the last idle full GC";
}

// Idle workers make spare isolates ahead of need: a tenant's first request
// takes one instead of waiting for Isolate::New.
// Counts the scheduler's calls into its IsolateCustomizer, and checks the
// state each call is promised.
class CountingCustomizer : public IsolateCustomizer {
 public:
  void ConfigureCreateParams(const std::string& tenant,
                             v8::Isolate::CreateParams* params) const override {
    configured.fetch_add(1);
    if (params->array_buffer_allocator_shared == nullptr) broken.fetch_add(1);
  }
  void CustomizeIsolate(const std::string& tenant, v8::Isolate* isolate) const override {
    customized.fetch_add(1);
    if (v8::Isolate::GetCurrent() != isolate || !v8::Locker::IsLocked(isolate)) broken.fetch_add(1);
  }
  void EnterJs(IsolateLease& lease) const override {
    entered.fetch_add(1);
    if (v8::Isolate::GetCurrent() == nullptr) broken.fetch_add(1);
  }
  void ExitJs(IsolateLease& lease, const RequestUsage& usage) const override {
    exited.fetch_add(1);
    if (usage.cpu < absl::ZeroDuration() || usage.wall < absl::ZeroDuration()) broken.fetch_add(1);
    internal::MutexLock lock(&mu);
    limits.push_back(usage.exceeded_limit);
    cpu.push_back(usage.cpu);
  }
  void ReportIsolateMetrics(const IsolateMetrics& metrics) const override {
    reported.fetch_add(1);
    if (metrics.tenant == nullptr || metrics.heap_bytes == 0) broken.fetch_add(1);
  }

  mutable std::atomic<int> configured{0}, customized{0}, entered{0}, exited{0}, reported{0},
      broken{0};
  mutable internal::Mutex mu;
  mutable std::vector<std::string> limits ABSL_GUARDED_BY(mu);
  mutable std::vector<absl::Duration> cpu ABSL_GUARDED_BY(mu);
};

TEST(IsolateSchedulerTest, CallsItsIsolateCustomizerAroundIsolatesAndRequests) {
  struct ShortCpuLimit : LimitEnforcer {
    absl::Duration CpuLimit(const std::string&) const override { return absl::Milliseconds(50); }
    absl::Duration WallLimit(const std::string&) const override { return absl::Seconds(60); }
  };
  auto customizer = std::make_shared<CountingCustomizer>();
  auto scheduler = MakeScheduler({.workers = 1,
                                  .spare_isolates = 0,
                                  .limits = std::make_shared<ShortCpuLimit>(),
                                  .customizer = customizer});
  for (int i = 0; i < 3; ++i) {
    Seen s = SubmitAndWait(*scheduler, "t", [](IsolateLease& l) { return Observe(l, "6*7"); });
    EXPECT_EQ(s.js.value, "42");
  }
  EXPECT_EQ(customizer->configured.load(), 1);  // one isolate, reused
  EXPECT_EQ(customizer->customized.load(), 1);
  EXPECT_EQ(customizer->entered.load(), 3);
  EXPECT_EQ(customizer->exited.load(), 3);
  EXPECT_EQ(customizer->reported.load(), 3);  // the isolate went idle after each

  // Stopped at its CPU limit: ExitJs names the limit and saw the CPU spent;
  // the isolate is disposed of (not reported idle) and the next one is new.
  Seen bad =
      SubmitAndWait(*scheduler, "t", [](IsolateLease& l) { return Observe(l, "for(;;){}"); });
  EXPECT_EQ(bad.limit, "cpu time");
  Seen after = SubmitAndWait(*scheduler, "t", [](IsolateLease& l) { return Observe(l, "1"); });
  EXPECT_TRUE(after.js.ok);
  EXPECT_EQ(customizer->configured.load(), 2);
  EXPECT_EQ(customizer->customized.load(), 2);
  EXPECT_EQ(customizer->entered.load(), 5);
  EXPECT_EQ(customizer->exited.load(), 5);
  EXPECT_EQ(customizer->reported.load(), 4);
  EXPECT_EQ(customizer->broken.load(), 0);
  internal::MutexLock lock(&customizer->mu);
  ASSERT_EQ(customizer->limits.size(), 5u);
  EXPECT_EQ(customizer->limits[0], "");
  EXPECT_EQ(customizer->limits[3], "cpu time");
  EXPECT_GE(customizer->cpu[3], absl::Milliseconds(50));
}

// Without a customizer the scheduler makes plain isolates from V8's own
// snapshot; JavaScript runs on them as usual.
TEST(IsolateSchedulerTest, DefaultCustomizerMakesPlainIsolates) {
  auto scheduler = MakeScheduler({.workers = 1});
  Seen s = SubmitAndWait(*scheduler, "t", [](IsolateLease& l) {
    return Observe(l, "typeof Date.now() + typeof SharedArrayBuffer");
  });
  EXPECT_TRUE(s.js.ok) << s.js.value;
  EXPECT_EQ(s.js.value, "numberundefined");
}

TEST(IsolateSchedulerTest, SpareIsolatesServeNewTenants) {
  auto scheduler = MakeScheduler({.workers = 1, .spare_isolates = 2});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the worker makes them
  Seen first =
      SubmitAndWait(*scheduler, "fresh", [](IsolateLease& l) { return Observe(l, "6*7"); });
  EXPECT_TRUE(first.js.ok);
  EXPECT_FALSE(first.reused);
  EXPECT_EQ(first.data_tenant, "fresh");
  EXPECT_EQ(scheduler->stats().spare_isolates_used, 1u);
}

}  // namespace
}  // namespace txfn
