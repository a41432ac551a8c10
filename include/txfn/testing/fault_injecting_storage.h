// txfn/testing/fault_injecting_storage.h — a Storage wrapper that fails,
// delays and counts calls on demand, for testing the layers above Storage.
//
// LevelDB tests its recovery with a fault-injecting Env; txfn tests its
// committer, snapshots and engine the same way: wrap the real storage, tell
// the wrapper which calls to fail, and check that nothing acknowledged is
// lost and every error comes out as it should.
//
//   auto base = std::make_shared<txfn::InMemoryStorage>();
//   txfn::testing::FaultInjectingStorage storage(base, /*seed=*/42);
//   storage.FailNext(txfn::testing::StorageMethod::kWrite, 2);  // Unavailable twice
//   storage.FailWithProbability(txfn::testing::StorageMethod::kGet, 0.1);
//   storage.SetDelay(txfn::testing::StorageMethod::kScan, absl::Milliseconds(1));
//   ... run the code under test against `storage` ...
//   EXPECT_EQ(storage.calls(txfn::testing::StorageMethod::kWrite), 3);
//
// For each call: first the method's delay (if any) is slept, outside every
// lock; then, if FailNext has calls left for the method, the call fails with
// that status; else, if a failure probability is set, the call fails with that
// probability (drawn from a generator seeded at construction, so one seed and
// one sequence of calls give the same failures every run). A failed call
// never reaches the wrapped storage. Otherwise the call is forwarded as is.
//
// Thread safety: every method may be called concurrently, including the
// configuration methods while calls are in flight. With concurrent callers the
// order in which they draw from the generator, hence which call fails, depends
// on scheduling; the counts stay exact.
#ifndef TXFN_TESTING_FAULT_INJECTING_STORAGE_H_
#define TXFN_TESTING_FAULT_INJECTING_STORAGE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "txfn/internal/mutex.h"
#include "txfn/storage.h"

namespace txfn::testing {

// The Storage methods, for configuring and counting them one by one.
enum class StorageMethod {
  kWrite,
  kGet,
  kScan,
  kReadLog,
  kMaxCommittedTimestamp,
  kListTenants,
  kDeleteTenant,
};
inline constexpr int kNumStorageMethods = 7;

// "Write", "Get", ... for messages.
std::string_view StorageMethodName(StorageMethod method);

class FaultInjectingStorage final : public Storage {
 public:
  // Wraps `base` (shared ownership). `seed` drives FailWithProbability.
  explicit FaultInjectingStorage(std::shared_ptr<Storage> base, uint64_t seed = 0);
  // Wraps `base`, which must outlive this object (not owned).
  explicit FaultInjectingStorage(Storage* base, uint64_t seed = 0);

  FaultInjectingStorage(const FaultInjectingStorage&) = delete;
  FaultInjectingStorage& operator=(const FaultInjectingStorage&) = delete;

  // The next `n` calls of `method` fail with `status` (which must not be OK).
  // Replaces any earlier FailNext of that method. n = 0 cancels.
  void FailNext(StorageMethod method, int64_t n,
                absl::Status status = absl::UnavailableError("injected storage fault"));

  // From now on each call of `method` (after any FailNext ones) fails with
  // probability `p` in [0, 1] (clamped), with `status`. p = 0 turns it off.
  void FailWithProbability(StorageMethod method, double p,
                           absl::Status status = absl::UnavailableError("injected storage fault"));

  // Every later call of `method` first sleeps `delay` (ZeroDuration: none).
  void SetDelay(StorageMethod method, absl::Duration delay);

  // Forgets every FailNext, FailWithProbability and SetDelay (not the counts).
  void ClearFaults();

  // Calls of `method` so far, failed ones included; and the failed ones.
  [[nodiscard]] int64_t calls(StorageMethod method) const;
  [[nodiscard]] int64_t failures(StorageMethod method) const;
  void ResetCounts();

  // The wrapped storage.
  Storage& base() const { return *base_; }

  // Storage, with the faults above.
  [[nodiscard]] absl::Status Write(absl::Span<const CommitRecord> commits) override;
  [[nodiscard]] absl::StatusOr<std::optional<IndexEntry>> Get(std::string_view tenant,
                                                              IndexId index, std::string_view key,
                                                              Timestamp ts) override;
  [[nodiscard]] absl::StatusOr<std::vector<IndexEntry>> Scan(std::string_view tenant, IndexId index,
                                                             const KeyRange& range, Timestamp ts,
                                                             ScanOrder order,
                                                             size_t limit) override;
  [[nodiscard]] absl::StatusOr<std::vector<CommitRecord>> ReadLog(std::string_view tenant,
                                                                  Timestamp after,
                                                                  size_t limit) override;
  [[nodiscard]] absl::StatusOr<Timestamp> MaxCommittedTimestamp(std::string_view tenant) override;
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> ListTenants() override;
  [[nodiscard]] absl::Status DeleteTenant(std::string_view tenant) override;

 private:
  struct MethodFaults {
    int64_t fail_next = 0;
    absl::Status fail_next_status;
    double probability = 0;
    absl::Status probability_status;
    absl::Duration delay = absl::ZeroDuration();
    int64_t calls = 0;
    int64_t failures = 0;
  };

  // Sleeps the delay, counts the call, and returns the injected error or OK.
  absl::Status Enter(StorageMethod method);

  std::shared_ptr<Storage> owned_;  // may be null
  Storage* const base_;
  mutable internal::Mutex mu_;
  std::array<MethodFaults, kNumStorageMethods> faults_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn::testing

#endif  // TXFN_TESTING_FAULT_INJECTING_STORAGE_H_
