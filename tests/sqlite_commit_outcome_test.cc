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

using testing_util::TempDir;

// ---- A VFS that fails one WAL sync ------------------------------------------

// Forwards every call to SQLite's default VFS. Once armed, the first sync of a
// WAL file after frames (bytes past the 32-byte WAL header) were written to
// it fails with SQLITE_IOERR_FSYNC, without syncing. Records the WAL's size
// at its last successful sync. Registered for the object's lifetime.
class FailingWalSyncVfs {
 public:
  static constexpr const char* kName = "txfn-failing-wal-sync";

  FailingWalSyncVfs() {
    real_ = sqlite3_vfs_find(nullptr);
    vfs_ = *real_;  // the real VFS's limits and helpers ...
    vfs_.iVersion = 2;
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.pNext = nullptr;
    vfs_.zName = kName;
    vfs_.pAppData = this;
    vfs_.xOpen = &Open;  // ... and our files
    vfs_.xDelete = [](sqlite3_vfs* v, const char* name, int sync) {
      return Self(v)->real_->xDelete(Self(v)->real_, name, sync);
    };
    vfs_.xAccess = [](sqlite3_vfs* v, const char* name, int flags, int* out) {
      return Self(v)->real_->xAccess(Self(v)->real_, name, flags, out);
    };
    vfs_.xFullPathname = [](sqlite3_vfs* v, const char* name, int n, char* out) {
      return Self(v)->real_->xFullPathname(Self(v)->real_, name, n, out);
    };
    vfs_.xDlOpen = [](sqlite3_vfs* v, const char* name) {
      return Self(v)->real_->xDlOpen(Self(v)->real_, name);
    };
    vfs_.xDlError = [](sqlite3_vfs* v, int n, char* out) {
      Self(v)->real_->xDlError(Self(v)->real_, n, out);
    };
    vfs_.xDlSym = [](sqlite3_vfs* v, void* h, const char* sym) {
      return Self(v)->real_->xDlSym(Self(v)->real_, h, sym);
    };
    vfs_.xDlClose = [](sqlite3_vfs* v, void* h) { Self(v)->real_->xDlClose(Self(v)->real_, h); };
    vfs_.xRandomness = [](sqlite3_vfs* v, int n, char* out) {
      return Self(v)->real_->xRandomness(Self(v)->real_, n, out);
    };
    vfs_.xSleep = [](sqlite3_vfs* v, int us) { return Self(v)->real_->xSleep(Self(v)->real_, us); };
    vfs_.xCurrentTime = [](sqlite3_vfs* v, double* out) {
      return Self(v)->real_->xCurrentTime(Self(v)->real_, out);
    };
    vfs_.xGetLastError = [](sqlite3_vfs* v, int n, char* out) {
      return Self(v)->real_->xGetLastError(Self(v)->real_, n, out);
    };
    vfs_.xCurrentTimeInt64 = [](sqlite3_vfs* v, sqlite3_int64* out) {
      return Self(v)->real_->xCurrentTimeInt64(Self(v)->real_, out);
    };
    registered_ = sqlite3_vfs_register(&vfs_, /*makeDflt=*/0) == SQLITE_OK;
  }
  ~FailingWalSyncVfs() {
    if (registered_) sqlite3_vfs_unregister(&vfs_);
  }
  FailingWalSyncVfs(const FailingWalSyncVfs&) = delete;
  FailingWalSyncVfs& operator=(const FailingWalSyncVfs&) = delete;

  bool registered() const { return registered_; }
  void FailNextWalSyncAfterFrames() { armed_ = true; }
  bool failed_a_sync() const { return failed_; }
  int64_t wal_size_at_last_sync() const { return synced_wal_size_; }

 private:
  struct File {
    sqlite3_file base;  // first: SQLite sees a File as its sqlite3_file
    sqlite3_file* real;
    FailingWalSyncVfs* owner;
    bool wal;
    bool frames_since_sync;
  };

  static FailingWalSyncVfs* Self(sqlite3_vfs* v) {
    return static_cast<FailingWalSyncVfs*>(v->pAppData);
  }
  static File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
  static sqlite3_file* Real(sqlite3_file* f) { return Of(f)->real; }

  static int Open(sqlite3_vfs* v, const char* name, sqlite3_file* file, int flags, int* out) {
    File* f = Of(file);
    f->real = reinterpret_cast<sqlite3_file*>(f + 1);
    f->owner = Self(v);
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->frames_since_sync = false;
    int rc = Self(v)->real_->xOpen(Self(v)->real_, name, f->real, flags, out);
    f->base.pMethods = rc == SQLITE_OK ? &kMethods : nullptr;
    return rc;
  }

  static int Sync(sqlite3_file* file, int flags) {
    File* f = Of(file);
    FailingWalSyncVfs* owner = f->owner;
    if (f->wal && f->frames_since_sync && owner->armed_.exchange(false)) {
      // The frames were written; their sync "fails" and is not done.
      owner->failed_ = true;
      return SQLITE_IOERR_FSYNC;
    }
    int rc = f->real->pMethods->xSync(f->real, flags);
    if (rc == SQLITE_OK && f->wal) {
      f->frames_since_sync = false;
      sqlite3_int64 size = 0;
      if (f->real->pMethods->xFileSize(f->real, &size) == SQLITE_OK) owner->synced_wal_size_ = size;
    }
    return rc;
  }

  static constexpr sqlite3_io_methods kMethods = {
      3,
      [](sqlite3_file* f) {
        int rc = Real(f)->pMethods != nullptr ? Real(f)->pMethods->xClose(Real(f)) : SQLITE_OK;
        return rc;
      },
      [](sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
        return Real(f)->pMethods->xRead(Real(f), buf, n, off);
      },
      [](sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
        if (Of(f)->wal && off >= 32) Of(f)->frames_since_sync = true;
        return Real(f)->pMethods->xWrite(Real(f), buf, n, off);
      },
      [](sqlite3_file* f, sqlite3_int64 size) {
        return Real(f)->pMethods->xTruncate(Real(f), size);
      },
      &Sync,
      [](sqlite3_file* f, sqlite3_int64* size) {
        return Real(f)->pMethods->xFileSize(Real(f), size);
      },
      [](sqlite3_file* f, int lock) { return Real(f)->pMethods->xLock(Real(f), lock); },
      [](sqlite3_file* f, int lock) { return Real(f)->pMethods->xUnlock(Real(f), lock); },
      [](sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); },
      [](sqlite3_file* f, int op, void* arg) {
        return Real(f)->pMethods->xFileControl(Real(f), op, arg);
      },
      [](sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); },
      [](sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); },
      [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
        return Real(f)->pMethods->xShmMap(Real(f), page, size, extend, out);
      },
      [](sqlite3_file* f, int offset, int n, int flags) {
        return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
      },
      [](sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); },
      [](sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); },
      [](sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
        return Real(f)->pMethods->xFetch(Real(f), off, n, out);
      },
      [](sqlite3_file* f, sqlite3_int64 off, void* p) {
        return Real(f)->pMethods->xUnfetch(Real(f), off, p);
      },
  };

  sqlite3_vfs* real_ = nullptr;
  sqlite3_vfs vfs_{};
  bool registered_ = false;
  std::atomic<bool> armed_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int64_t> synced_wal_size_{0};
};

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
