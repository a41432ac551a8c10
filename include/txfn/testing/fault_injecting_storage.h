// txfn/testing/fault_injecting_storage.h — a Storage wrapper that fails,
// delays and counts calls on demand, and simulates crashes, for testing the
// layers above Storage.
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
//   storage.FailNextAfterForwarding(txfn::testing::StorageMethod::kWrite, 1);  // lands, then errs
//   ... run the code under test against `storage` ...
//   EXPECT_EQ(storage.calls(txfn::testing::StorageMethod::kWrite), 3);
//
// For each call: first the method's delay (if any) is slept, outside every
// lock; then, if FailNext has calls left for the method, the call fails with
// that status; else, if a failure probability is set, the call fails with that
// probability (drawn from a generator seeded at construction, so one seed and
// one sequence of calls give the same failures every run). Such a failed call
// never reaches the wrapped storage. Otherwise the call is forwarded; if it
// succeeds there and an after-forwarding fault is due (FailNextAfterForwarding,
// then FailWithProbabilityAfterForwarding), the call took effect but reports
// that fault's status instead — for Write by default an unknown commit outcome
// (CommitOutcomeUnknownError), as a network store reports a connection lost
// after COMMIT was sent. Reads then show the write, as such a store would.
//
// Crash simulation (LevelDB's FaultInjectionTestEnv drops what was not
// synced). FailSyncNext(n): the next n Writes are written but their sync
// fails: each returns an unknown outcome and its batch is held here, not yet
// in the wrapped storage (as SQLite's WAL frames whose fsync failed are in
// the file but not visible). From then until SimulateCrash() the wrapper
// cannot know its durable state, so, as SqliteStorage does after a failed
// COMMIT, it refuses (Unavailable) every call that would report what is
// committed or change it: Write, DeleteTenant(IfNewest), ApplyRetention, ReadLog,
// MaxCommittedTimestamp and ListTenants; Get and Scan are forwarded.
// SimulateCrash() is the restart: the unsynced batches are dropped
// (UnsyncedWrites::kDrop: the power failed before they reached the disk) or
// made durable (kKeep: they reached it after all, as WAL recovery replays
// frames whose fsync reported an error), and calls are served normally again.
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
#include "txfn/storage_wrapper.h"

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
  kApplyRetention,
  kDeleteTenantIfNewest,
};
inline constexpr int kNumStorageMethods = 9;

// "Write", "Get", ... for messages.
std::string_view StorageMethodName(StorageMethod method);

// What SimulateCrash does with the batches of writes whose sync failed.
enum class UnsyncedWrites { kDrop, kKeep };

class FaultInjectingStorage final : public StorageWrapper {
 public:
  // Wraps `base` (shared ownership). `seed` drives the probabilities.
  explicit FaultInjectingStorage(std::shared_ptr<Storage> base, uint64_t seed = 0);
  // Wraps `base`, which must outlive this object (not owned).
  explicit FaultInjectingStorage(Storage* base, uint64_t seed = 0);

  // ---- Faults before forwarding: the call never reaches the wrapped storage.
  // The next `n` calls of `method` fail with `status` (which must not be OK).
  // Replaces any earlier FailNext of that method. n = 0 cancels.
  void FailNext(StorageMethod method, int64_t n,
                absl::Status status = absl::UnavailableError("injected storage fault"));
  // From now on each call of `method` (after any FailNext ones) fails with
  // probability `p` in [0, 1] (clamped), with `status`. p = 0 turns it off.
  void FailWithProbability(StorageMethod method, double p,
                           absl::Status status = absl::UnavailableError("injected storage fault"));

  // ---- Faults after forwarding: the call takes effect, then reports `status`.
  // Default status: an unknown commit outcome (IsCommitOutcomeUnknown).
  void FailNextAfterForwarding(StorageMethod method, int64_t n,
                               absl::Status status = DefaultAfterForwardingStatus());
  void FailWithProbabilityAfterForwarding(StorageMethod method, double p,
                                          absl::Status status = DefaultAfterForwardingStatus());

  // ---- Crash simulation (see the file comment).
  // The next `n` Writes fail their sync: held back unsynced, answered with an
  // unknown outcome. Replaces an earlier FailSyncNext; n = 0 cancels.
  void FailSyncNext(int64_t n);
  // Restarts: drops or keeps (writes through, oldest first) the unsynced
  // batches, then serves normally. Returns the wrapped storage's error if a
  // kept batch fails to write (the rest are then dropped).
  [[nodiscard]] absl::Status SimulateCrash(UnsyncedWrites unsynced);
  // Batches held unsynced now.
  [[nodiscard]] size_t unsynced_batches() const;

  // Every later call of `method` first sleeps `delay` (ZeroDuration: none).
  void SetDelay(StorageMethod method, absl::Duration delay);

  // Forgets every configured fault and delay (not the counts, not the
  // unsynced batches: only SimulateCrash settles those).
  void ClearFaults();

  // Calls of `method` so far, failed ones included; and the failed ones
  // (refused, failed before or after forwarding, failed syncs).
  [[nodiscard]] int64_t calls(StorageMethod method) const;
  [[nodiscard]] int64_t failures(StorageMethod method) const;
  void ResetCounts();

  // The wrapped storage (calls on it bypass the faults).
  Storage& base() const { return target(); }

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
  [[nodiscard]] absl::StatusOr<bool> DeleteTenantIfNewest(std::string_view tenant,
                                                          Timestamp newest) override;
  [[nodiscard]] absl::StatusOr<RetentionResult> ApplyRetention(std::string_view tenant,
                                                               Timestamp ts,
                                                               size_t max_commits) override;

  static absl::Status DefaultAfterForwardingStatus();

 private:
  struct Fault {
    int64_t next = 0;
    absl::Status next_status;
    double probability = 0;
    absl::Status probability_status;
  };
  struct MethodFaults {
    Fault before;
    Fault after;
    absl::Duration delay = absl::ZeroDuration();
    int64_t calls = 0;
    int64_t failures = 0;
  };

  // Sleeps the delay, counts the call, and returns the refusal or injected
  // error due before forwarding, or OK.
  absl::Status Enter(StorageMethod method);
  // After a forwarded call succeeded: the injected error due now, or OK.
  absl::Status Exit(StorageMethod method);
  // Draws from `fault` (FailNext first, then the probability).
  absl::Status Draw(Fault& fault, MethodFaults& counts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forwards a call that returns a StatusOr, applying the faults.
  template <typename Call>
  auto Forward(StorageMethod method, Call call) -> decltype(call());

  mutable ::txfn::internal::Mutex mu_;
  std::array<MethodFaults, kNumStorageMethods> faults_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  int64_t fail_sync_next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<CommitRecord>> unsynced_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn::testing

#endif  // TXFN_TESTING_FAULT_INJECTING_STORAGE_H_
