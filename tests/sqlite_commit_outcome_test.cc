// SqliteStorage when COMMIT fails after the WAL frames were written (issue 11).
//
// A shim VFS over SQLite's default one fails the WAL fsync that follows frame
// writes. The commit's frames are in the file but not visible: whether they
// are durable depends on what happens next. A forked child commits through a
// committer, sees the unknown outcome, and "crashes" (_exit, no clean close);
// the parent reopens the file:
// - as after a process crash, the OS kept the written bytes: WAL recovery
//   replays the commit, so the caller must not have been told "not committed";
// - as after a power failure, the unsynced bytes are gone (the parent cuts the
//   WAL back to its last synced size): the commit is absent.
// Either way a host that retries with an idempotency key applies the
// transfer exactly once.
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "failing_wal_sync_vfs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sqlite_test_util.h"
#include "txfn/committer.h"
#include "txfn/idempotency.h"
#include "txfn/retry.h"
#include "txfn/schema.h"
#include "txfn/sqlite_storage.h"
#include "txfn/status_macros.h"
#include "txfn/transaction.h"

namespace txfn {
namespace {

using testing_util::FailingWalSyncVfs;
using testing_util::TempDir;

// ---- The bank ------------------------------------------------------------------

constexpr char kTenant[] = "bank";
constexpr char kTransferKey[] = "transfer-1";

Value Obj(Value::Object fields) { return Value::FromObject(std::move(fields)); }

int64_t Balance(Transaction& txn, const std::string& id) {
  return txn.Get(id).value()->Find("balance")->int64();
}

// Moves 10 from `from` to `to`, recording the idempotency key; returns the
// commit's status.
absl::StatusOr<Timestamp> Transfer(Committer& committer, const std::string& from,
                                   const std::string& to) {
  Transaction txn(committer.Latest());
  TXFN_RETURN_IF_ERROR(txn.Patch(from, Obj({{"balance", Value::Int64(Balance(txn, from) - 10)}})));
  TXFN_RETURN_IF_ERROR(txn.Patch(to, Obj({{"balance", Value::Int64(Balance(txn, to) + 10)}})));
  PreparedCommit commit = txn.Prepare();
  TXFN_RETURN_IF_ERROR(AddIdempotencyKey(kTransferKey, Value::String("moved 10"), &commit));
  return committer.Commit(std::move(commit));
}

// What the child saw, for the parent.
struct ChildReport {
  int64_t wal_size_at_last_sync = 0;
  Timestamp unknown_ts = 0;
  char from[64] = {};
  char to[64] = {};
};

// Exit codes of the child.
enum ChildExit : int {
  kChildOk = 0,
  kSetupFailed = 10,
  kNoSyncFailed,
  kNotUnknown,
  kWriteNotRefused,
  kMaxNotRefused,
  kReadsBroken,
  kReportFailed,
};

// The child: sets up two accounts, transfers with the WAL sync failing, checks
// what it is told, reports, and dies without closing anything.
[[noreturn]] void Child(const std::string& path, int report_fd) {
  FailingWalSyncVfs vfs;
  if (!vfs.registered()) _exit(kSetupFailed);
  absl::StatusOr<std::unique_ptr<SqliteStorage>> opened =
      SqliteStorage::Open(path, {.vfs = FailingWalSyncVfs::kName});
  if (!opened.ok()) _exit(kSetupFailed);
  std::shared_ptr<Storage> storage = *std::move(opened);
  absl::StatusOr<std::unique_ptr<Committer>> committer = Committer::Open(storage, kTenant);
  if (!committer.ok()) _exit(kSetupFailed);
  Transaction deploy((*committer)->Latest());
  absl::StatusOr<Schema> schema =
      Schema::FromJson(R"({"tables": {"accounts": {"fields": {"balance": "int64"}}}})");
  if (!schema.ok() || !deploy.DeploySchema(*schema).ok() ||
      !(*committer)->Commit(deploy.Prepare()).ok()) {
    _exit(kSetupFailed);
  }
  Transaction open((*committer)->Latest());
  absl::StatusOr<std::string> from = open.Insert("accounts", Obj({{"balance", Value::Int64(100)}}));
  absl::StatusOr<std::string> to = open.Insert("accounts", Obj({{"balance", Value::Int64(0)}}));
  if (!from.ok() || !to.ok() || !(*committer)->Commit(open.Prepare()).ok()) _exit(kSetupFailed);

  vfs.FailNextWalSyncAfterFrames();
  absl::StatusOr<Timestamp> transfer = Transfer(**committer, *from, *to);
  if (!vfs.failed_a_sync()) _exit(kNoSyncFailed);
  if (!IsCommitOutcomeUnknown(transfer.status())) {
    std::fprintf(stderr, "child: transfer returned %s\n", transfer.status().ToString().c_str());
    _exit(kNotUnknown);
  }
  // Nothing else is written, nor claimed, before a restart settles it.
  Transaction other((*committer)->Latest());
  if (!other.Insert("accounts", Obj({{"balance", Value::Int64(0)}})).ok()) _exit(kSetupFailed);
  absl::StatusOr<Timestamp> refused = (*committer)->Commit(other.Prepare());
  if (!absl::IsUnavailable(refused.status()) || IsCommitOutcomeUnknown(refused.status())) {
    _exit(kWriteNotRefused);
  }
  if (!absl::IsUnavailable(storage->MaxCommittedTimestamp(kTenant).status())) _exit(kMaxNotRefused);
  auto* sqlite = static_cast<SqliteStorage*>(storage.get());
  if (!absl::IsUnavailable(sqlite->ApplyRetention(kTenant, 1, 0).status()) ||
      !absl::IsUnavailable(sqlite->Backup(path + ".backup"))) {
    _exit(kMaxNotRefused);
  }
  // Reads at committed timestamps go on: they hold whatever recovery decides.
  Transaction read((*committer)->Latest());
  absl::StatusOr<std::optional<Value>> account = read.Get(*from);
  if (!account.ok() || !account->has_value() || (**account).Find("balance")->int64() != 100) {
    _exit(kReadsBroken);
  }

  ChildReport report{.wal_size_at_last_sync = vfs.wal_size_at_last_sync(),
                     .unknown_ts = CommitOutcomeUnknownTimestamp(transfer.status()).value_or(0)};
  std::strncpy(report.from, from->c_str(), sizeof report.from - 1);
  std::strncpy(report.to, to->c_str(), sizeof report.to - 1);
  if (write(report_fd, &report, sizeof report) != sizeof report) _exit(kReportFailed);
  _exit(kChildOk);  // the crash: no destructor runs, no connection is closed
}

enum class Disk { kKeptWrittenBytes, kLostUnsyncedBytes };

class SqliteCommitOutcomeTest : public ::testing::TestWithParam<Disk> {};

TEST_P(SqliteCommitOutcomeTest, AFailedWalSyncIsAnUnknownOutcomeSettledByRecovery) {
  TempDir dir;
  const std::string path = dir.File("bank.db");
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    Child(path, fds[1]);
  }
  close(fds[1]);
  ChildReport report;
  ssize_t got = read(fds[0], &report, sizeof report);
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), kChildOk)
      << "child exit " << WEXITSTATUS(wstatus) << " (" << kNotUnknown
      << ": the transfer was not reported as an unknown outcome)";
  ASSERT_EQ(got, static_cast<ssize_t>(sizeof report));
  ASSERT_GT(report.unknown_ts, 0u);
  const std::string from = report.from, to = report.to;

  const bool kept = GetParam() == Disk::kKeptWrittenBytes;
  if (!kept) {
    // A power failure: what was not synced never reached the disk.
    std::filesystem::resize_file(path + "-wal",
                                 static_cast<uintmax_t>(report.wal_size_at_last_sync));
  }

  // The restart: recovery replays the frames (kept) or finds none (lost).
  absl::StatusOr<std::unique_ptr<SqliteStorage>> reopened = SqliteStorage::Open(path);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::shared_ptr<Storage> storage = *std::move(reopened);
  absl::StatusOr<Timestamp> max = storage->MaxCommittedTimestamp(kTenant);
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(*max >= report.unknown_ts, kept);
  absl::StatusOr<std::unique_ptr<Committer>> committer = Committer::Open(storage, kTenant);
  ASSERT_TRUE(committer.ok()) << committer.status();

  // The host retries with the same key, twice: the transfer happens once.
  for (int retry = 0; retry < 2; ++retry) {
    absl::StatusOr<std::optional<IdempotentResult>> first =
        FindIdempotencyKey(*(*committer)->Latest(), kTransferKey);
    ASSERT_TRUE(first.ok()) << first.status();
    if (first->has_value()) {
      EXPECT_EQ((*first)->value, Value::String("moved 10"));
      if (kept || retry == 1) continue;
      ADD_FAILURE() << "the key was found although the commit was lost";
    }
    ASSERT_EQ(retry, 0) << "the key's commit was not found on the second retry";
    EXPECT_FALSE(kept) << "the commit was replayed but its key is missing";
    absl::StatusOr<Timestamp> again = Transfer(**committer, from, to);
    ASSERT_TRUE(again.ok()) << again.status();
  }
  Transaction check((*committer)->Latest());
  EXPECT_EQ(Balance(check, from), 90);
  EXPECT_EQ(Balance(check, to), 10);
}

INSTANTIATE_TEST_SUITE_P(AfterTheCrash, SqliteCommitOutcomeTest,
                         ::testing::Values(Disk::kKeptWrittenBytes, Disk::kLostUnsyncedBytes),
                         [](const ::testing::TestParamInfo<Disk>& info) {
                           return info.param == Disk::kKeptWrittenBytes ? "ProcessCrash"
                                                                        : "PowerFailure";
                         });

}  // namespace
}  // namespace txfn
