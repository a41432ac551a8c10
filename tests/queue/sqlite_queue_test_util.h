// TempSqliteQueue: a SqliteQueue in its own temporary directory, with the
// make/reopen pair the DurableQueue conformance suite takes.
#ifndef TXFN_TESTS_QUEUE_SQLITE_QUEUE_TEST_UTIL_H_
#define TXFN_TESTS_QUEUE_SQLITE_QUEUE_TEST_UTIL_H_

#include <memory>
#include <utility>

#include "gtest/gtest.h"
#include "queue_test_util.h"
#include "txfn/sqlite_queue.h"

namespace txfn::queue_test {

// A SqliteQueue on a file in its own TempDir, removed with it.
class TempSqliteQueue final : public ForwardingQueue {
 public:
  static std::unique_ptr<DurableQueue> Make(int shards) {
    return Open(std::make_shared<TempDir>(),
                {.synchronous = SqliteQueueOptions::Synchronous::kOff, .shards = shards});
  }
  static std::unique_ptr<DurableQueue> Reopen(std::unique_ptr<DurableQueue> old) {
    auto* temp = dynamic_cast<TempSqliteQueue*>(old.get());
    if (temp == nullptr) return nullptr;
    std::shared_ptr<TempDir> dir = temp->dir_;
    SqliteQueueOptions options = temp->options_;
    options.shards = 0;  // whatever the file has
    old.reset();
    return Open(std::move(dir), options);
  }

 private:
  static std::unique_ptr<DurableQueue> Open(std::shared_ptr<TempDir> dir,
                                            SqliteQueueOptions options) {
    auto q = SqliteQueue::Open(dir->File("queue.db"), options);
    if (!q.ok()) {
      ADD_FAILURE() << q.status();
      return nullptr;
    }
    return std::unique_ptr<DurableQueue>(
        new TempSqliteQueue(std::move(dir), options, *std::move(q)));
  }
  TempSqliteQueue(std::shared_ptr<TempDir> dir, SqliteQueueOptions options,
                  std::unique_ptr<SqliteQueue> q)
      : ForwardingQueue(std::move(q)), dir_(std::move(dir)), options_(options) {}
  ~TempSqliteQueue() override = default;

  std::shared_ptr<TempDir> dir_;
  SqliteQueueOptions options_;
};

}  // namespace txfn::queue_test

#endif  // TXFN_TESTS_QUEUE_SQLITE_QUEUE_TEST_UTIL_H_
