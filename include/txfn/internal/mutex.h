// txfn/internal/mutex.h — the lock every txfn component uses.
//
// A thin wrapper over std::mutex / pthread_rwlock / std::condition_variable
// carrying abseil's thread-safety annotations, so clang's -Wthread-safety checks ABSL_GUARDED_BY
// and ABSL_EXCLUSIVE_LOCKS_REQUIRED at compile time.
//
// Why not absl::Mutex: Debian's libabsl is not built with ThreadSanitizer, so
// TSan cannot see absl::Mutex's happens-before edges and reports false races on
// every guarded field. std::mutex goes through pthread, which TSan intercepts.
// LevelDB's port::Mutex is the same idea.
//
//   class Counter {
//    public:
//     void Add() { txfn::internal::MutexLock lock(&mu_); ++n_; }
//    private:
//     txfn::internal::Mutex mu_;
//     int n_ ABSL_GUARDED_BY(mu_) = 0;
//   };
//
// A SharedMutex lets readers share the lock while a writer holds it alone:
//
//   absl::StatusOr<int> Table::Get() {
//     txfn::internal::ReaderMutexLock lock(&mu_);  // many readers at once
//     return value_;
//   }
//   void Table::Set(int v) { txfn::internal::WriterMutexLock lock(&mu_); value_ = v; }
//
// Thread safety: Mutex, SharedMutex and CondVar are safe to use from any
// thread; MutexLock, ReaderMutexLock and WriterMutexLock are scoped objects
// owned by one thread.
#ifndef TXFN_INTERNAL_MUTEX_H_
#define TXFN_INTERNAL_MUTEX_H_

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace txfn::internal {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  [[nodiscard]] bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  // Documents (to the analysis) that the caller holds the lock.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for the scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A reader/writer lock over pthread_rwlock (which TSan intercepts), set to
// prefer writers on glibc: a steady stream of readers cannot starve a writer
// (std::shared_mutex on glibc prefers readers and can). Not recursive: a
// thread holding it (even shared) must not lock it again, since a waiting
// writer blocks new readers. A reader may not upgrade to a writer.
class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&rw_, &attr);
    pthread_rwlockattr_destroy(&attr);
  }
  ~SharedMutex() { pthread_rwlock_destroy(&rw_); }
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { pthread_rwlock_wrlock(&rw_); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&rw_); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { pthread_rwlock_rdlock(&rw_); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { pthread_rwlock_unlock(&rw_); }
  // Document (to the analysis) that the caller holds the lock exclusively /
  // at least shared. They check nothing at run time.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}
  void AssertReaderHeld() const ABSL_ASSERT_SHARED_LOCK() {}

 private:
  pthread_rwlock_t rw_;
};

// Holds `mu` shared for the scope.
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// Holds `mu` exclusively for the scope.
class ABSL_SCOPED_LOCKABLE WriterMutexLock {
 public:
  explicit WriterMutexLock(SharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~WriterMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  WriterMutexLock(const WriterMutexLock&) = delete;
  WriterMutexLock& operator=(const WriterMutexLock&) = delete;

 private:
  SharedMutex* const mu_;
};

// A condition variable bound to one Mutex. Waits are predicate loops, so a
// spurious wake-up is never visible to the caller.
class CondVar {
 public:
  explicit CondVar(Mutex* mu) : mu_(mu) {}
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Blocks until `done()` is true. Requires mu held; done() runs with mu held.
  // (Not annotated: the analysis cannot see that mu_ is the caller's mutex. A
  // predicate reading guarded members says so with
  // `[&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {...}`.)
  template <typename Predicate>
  void Wait(Predicate done) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    cv_.wait(lock, done);
    lock.release();
  }

  // Like Wait, but gives up after `timeout`. Returns done().
  template <typename Predicate>
  bool WaitWithTimeout(absl::Duration timeout, Predicate done) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::unique_lock<std::mutex> lock(mu_->mu_, std::adopt_lock);
    bool result = cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), done);
    lock.release();
    return result;
  }

  // Like Wait, but gives up at `deadline` (wall clock; InfiniteFuture: never). Returns done().
  template <typename Predicate>
  bool WaitWithDeadline(absl::Time deadline, Predicate done) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (deadline == absl::InfiniteFuture()) {
      Wait(done);
      return true;
    }
    // In steps of at most an hour: a far deadline must not overflow the clock's arithmetic.
    for (absl::Duration left = deadline - absl::Now(); !done() && left > absl::ZeroDuration();
         left = deadline - absl::Now()) {
      WaitWithTimeout(std::min(left, absl::Hours(1)), done);
    }
    return done();
  }

  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  Mutex* const mu_;
  std::condition_variable cv_;
};

}  // namespace txfn::internal

#endif  // TXFN_INTERNAL_MUTEX_H_
