// txfn/testing/durable_queue_conformance.h — the test suite every
// DurableQueue adapter must pass.
//
// Passing it is the definition of a correct adapter: it checks the contract
// of <txfn/durable_queue.h> — enqueue atomicity and idempotence, due order,
// the function and quota filters, lease exclusivity, expiry and re-delivery, stale-token
// refusal, NACK with attempts, extension, dead-lettering by deadline,
// attempts and request, re-drive, depths, every InvalidArgument path, and
// (with the concurrency suite) many lessees racing on one queue. In your
// adapter's test file:
//
//   #include "txfn/testing/durable_queue_conformance.h"
//   TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(MyQueue, [] {
//     return std::make_unique<MyQueue>(/*a fresh, empty queue*/);
//   });
//
// and link the test with txfn::queue_testing and GTest::gtest_main. The
// factory is called once per test and must return a new, empty queue (any
// shard count >= 1; the suite covers every shard). It may return nullptr to
// fail the test. A durable adapter may pass a second function that destroys
// the queue and opens one on the same data (as after a restart); the suite
// then checks that calls, leases, dead letters and token uniqueness survive:
//
//   TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(
//       MySqlQueue, [] { return OpenFresh(); },
//       [](std::unique_ptr<txfn::DurableQueue> old) { return Reopen(std::move(old)); });
//
// TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE instantiates only
// the concurrent tests (for a ThreadSanitizer build).
//
// Thread safety: googletest fixtures; the concurrency tests start their own
// threads.
#ifndef TXFN_TESTING_DURABLE_QUEUE_CONFORMANCE_H_
#define TXFN_TESTING_DURABLE_QUEUE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <utility>

#include "gtest/gtest.h"
#include "txfn/durable_queue.h"

namespace txfn::testing {

// How the suite gets the queue under test.
struct QueueFactory {
  using Make = std::function<std::unique_ptr<DurableQueue>()>;
  using ReopenFn = std::function<std::unique_ptr<DurableQueue>(std::unique_ptr<DurableQueue>)>;

  QueueFactory(Make make_fn, ReopenFn reopen_fn = nullptr)  // NOLINT: implicit on purpose
      : make(std::move(make_fn)), reopen(std::move(reopen_fn)) {}

  Make make;        // a new, empty queue; required
  ReopenFn reopen;  // optional: destroys the old queue, returns one on the same data

  friend void PrintTo(const QueueFactory& f, std::ostream* os) {
    *os << (f.reopen ? "QueueFactory{make, reopen}" : "QueueFactory{make}");
  }
};

// The single-threaded conformance tests. Each test gets a fresh queue().
class DurableQueueConformanceTest : public ::testing::TestWithParam<QueueFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  DurableQueue& queue() { return *queue_; }
  // Replaces queue() by GetParam().reopen(queue()); false (the test then
  // skips) if the adapter has no reopen.
  [[nodiscard]] bool Reopen();

 private:
  std::unique_ptr<DurableQueue> queue_;
};

// Many lessees racing on one queue; built for ThreadSanitizer too.
class DurableQueueConcurrencyConformanceTest : public ::testing::TestWithParam<QueueFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  DurableQueue& queue() { return *queue_; }

 private:
  std::unique_ptr<DurableQueue> queue_;
};

namespace internal {
// Referenced by the macros so that a static link keeps the test registrations.
int LinkDurableQueueConformanceTests();
int LinkDurableQueueConcurrencyConformanceTests();
}  // namespace internal

}  // namespace txfn::testing

// Instantiates every conformance test for one adapter. `name` is an identifier;
// the rest are QueueFactory's constructor arguments (`make`, optionally
// `reopen`). Use at namespace scope, once per adapter and name.
#define TXFN_INSTANTIATE_DURABLE_QUEUE_CONFORMANCE(name, ...)                                \
  TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(name, __VA_ARGS__);                 \
  namespace txfn_queue_conformance_##name {                                                  \
    using DurableQueueConformanceTest = ::txfn::testing::DurableQueueConformanceTest;        \
    INSTANTIATE_TEST_SUITE_P(name, DurableQueueConformanceTest,                              \
                             ::testing::Values(::txfn::testing::QueueFactory(__VA_ARGS__))); \
    [[maybe_unused]] static const int linked =                                               \
        ::txfn::testing::internal::LinkDurableQueueConformanceTests();                       \
  }                                                                                          \
  static_assert(true, "require a semicolon")

// Instantiates only the concurrency tests (for a ThreadSanitizer binary).
#define TXFN_INSTANTIATE_DURABLE_QUEUE_CONCURRENCY_CONFORMANCE(name, ...)                    \
  namespace txfn_queue_concurrency_conformance_##name {                                      \
    using DurableQueueConcurrencyConformanceTest =                                           \
        ::txfn::testing::DurableQueueConcurrencyConformanceTest;                             \
    INSTANTIATE_TEST_SUITE_P(name, DurableQueueConcurrencyConformanceTest,                   \
                             ::testing::Values(::txfn::testing::QueueFactory(__VA_ARGS__))); \
    [[maybe_unused]] static const int linked =                                               \
        ::txfn::testing::internal::LinkDurableQueueConcurrencyConformanceTests();            \
  }                                                                                          \
  static_assert(true, "require a semicolon")

#endif  // TXFN_TESTING_DURABLE_QUEUE_CONFORMANCE_H_
