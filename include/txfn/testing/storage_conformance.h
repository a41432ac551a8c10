// txfn/testing/storage_conformance.h — the test suite every Storage adapter
// must pass.
//
// Passing this suite is the definition of a correct adapter: it checks the
// contract of <txfn/storage.h> and nothing else — versioned reads at every
// timestamp against a model, range bounds, binary key order, tombstones,
// atomic batches, the commit log, tenants (and DeleteTenantIfNewest, where the
// adapter has it), every InvalidArgument path, and readers racing a writer. In
// your adapter's test file:
//
//   #include "txfn/testing/storage_conformance.h"
//   #include "my_storage.h"
//
//   TXFN_INSTANTIATE_STORAGE_CONFORMANCE(MyStorage, [] {
//     return std::make_unique<MyStorage>(/*a fresh, empty store*/);
//   });
//
// and link the test binary with txfn::testing and GTest::gtest_main. The
// factory is called once per test and must return a new, empty Storage (e.g.
// in a fresh temporary directory or database schema, removed by the returned
// object's destructor). It may return nullptr to fail the test.
//
// A durable adapter may pass a second function that reopens a store on the
// same data (after the first object is destroyed, as after a restart); the
// suite then checks that committed data, and nothing from a failed Write,
// survives it. Without it those tests are skipped:
//
//   TXFN_INSTANTIATE_STORAGE_CONFORMANCE(
//       MySqlite,
//       [dir] { return OpenSqlite(dir.NewPath()); },
//       [](std::unique_ptr<txfn::Storage> old) { return Reopen(std::move(old)); });
//
// TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE instantiates only the
// concurrent tests (StorageConcurrencyConformanceTest), for a ThreadSanitizer
// build. TXFN_INSTANTIATE_STORAGE_CONFORMANCE instantiates both suites.
//
// Thread safety: the fixtures are googletest fixtures (one thread per test,
// except that the concurrency tests start their own threads).
#ifndef TXFN_TESTING_STORAGE_CONFORMANCE_H_
#define TXFN_TESTING_STORAGE_CONFORMANCE_H_

#include <functional>
#include <memory>
#include <ostream>
#include <utility>

#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn::testing {

// How the suite gets the Storage under test.
struct StorageFactory {
  using Make = std::function<std::unique_ptr<Storage>()>;
  using ReopenFn = std::function<std::unique_ptr<Storage>(std::unique_ptr<Storage> old)>;

  StorageFactory(Make make_fn, ReopenFn reopen_fn = nullptr)  // NOLINT: implicit on purpose
      : make(std::move(make_fn)), reopen(std::move(reopen_fn)) {}

  // Returns a new, empty Storage. Required.
  Make make;
  // Optional: destroys `old` and returns a Storage over the same data, as a
  // process restart would. Empty for adapters that are not durable.
  ReopenFn reopen;

  friend void PrintTo(const StorageFactory& f, std::ostream* os) {
    *os << (f.reopen ? "StorageFactory{make, reopen}" : "StorageFactory{make}");
  }
};

// The single-threaded conformance tests. Each test gets a fresh storage().
class StorageConformanceTest : public ::testing::TestWithParam<StorageFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Storage& storage() { return *storage_; }
  // Replaces storage() by GetParam().reopen(storage()); false (and a skipped
  // test) if the adapter has no reopen.
  [[nodiscard]] bool Reopen();

 private:
  std::unique_ptr<Storage> storage_;
};

// Readers and writers racing on one storage; built for ThreadSanitizer too.
class StorageConcurrencyConformanceTest : public ::testing::TestWithParam<StorageFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Storage& storage() { return *storage_; }

 private:
  std::unique_ptr<Storage> storage_;
};

namespace internal {
// Defined beside each suite's tests, and referenced by the macros below so
// that a static link keeps the object files holding the TEST_P registrations.
int LinkStorageConformanceTests();
int LinkStorageConcurrencyConformanceTests();
}  // namespace internal

}  // namespace txfn::testing

// Instantiates every conformance test for one adapter. `name` is an identifier
// (the test name prefix, and part of a namespace name); the rest are the
// StorageFactory constructor's arguments: `make`, optionally followed by
// `reopen`. Use at namespace scope, once per adapter and name.
#define TXFN_INSTANTIATE_STORAGE_CONFORMANCE(name, ...)                                        \
  TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(name, __VA_ARGS__);                         \
  namespace txfn_storage_conformance_##name {                                                  \
    using StorageConformanceTest = ::txfn::testing::StorageConformanceTest;                    \
    INSTANTIATE_TEST_SUITE_P(name, StorageConformanceTest,                                     \
                             ::testing::Values(::txfn::testing::StorageFactory(__VA_ARGS__))); \
    [[maybe_unused]] static const int linked =                                                 \
        ::txfn::testing::internal::LinkStorageConformanceTests();                              \
  }                                                                                            \
  static_assert(true, "require a semicolon")

// Instantiates only the concurrency tests (for a ThreadSanitizer binary).
#define TXFN_INSTANTIATE_STORAGE_CONCURRENCY_CONFORMANCE(name, ...)                               \
  namespace txfn_storage_concurrency_conformance_##name {                                         \
    using StorageConcurrencyConformanceTest = ::txfn::testing::StorageConcurrencyConformanceTest; \
    INSTANTIATE_TEST_SUITE_P(name, StorageConcurrencyConformanceTest,                             \
                             ::testing::Values(::txfn::testing::StorageFactory(__VA_ARGS__)));    \
    [[maybe_unused]] static const int linked =                                                    \
        ::txfn::testing::internal::LinkStorageConcurrencyConformanceTests();                      \
  }                                                                                               \
  static_assert(true, "require a semicolon")

#endif  // TXFN_TESTING_STORAGE_CONFORMANCE_H_
