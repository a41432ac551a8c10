// tests/failing_wal_sync_vfs.h — an SQLite VFS that fails one WAL fsync, for tests of what
// a failed COMMIT reports (its frames are written but not synced: the outcome is unknown).
//
//   testing_util::FailingWalSyncVfs vfs;  // registered while it lives
//   auto storage = SqliteStorage::Open(path, {.vfs = FailingWalSyncVfs::kName});
//   vfs.FailNextWalSyncAfterFrames();     // the next commit's WAL sync fails
#ifndef TXFN_TESTS_FAILING_WAL_SYNC_VFS_H_
#define TXFN_TESTS_FAILING_WAL_SYNC_VFS_H_

#include <sqlite3.h>

#include <atomic>
#include <cstdint>

namespace txfn::testing_util {

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

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_FAILING_WAL_SYNC_VFS_H_
