// The engine on SQLite (txfn/sqlite_engine.h), and the one-argument
// Engine::Open, which may open SQLite and so lives here, not in txfn::engine.
#include "txfn/sqlite_engine.h"

#include <utility>

#include "txfn/in_memory_storage.h"
#include "txfn/sqlite_queue.h"
#include "txfn/status_macros.h"

namespace txfn {

std::string SqliteQueuePath(const std::string& path) { return path + ".queue"; }

absl::StatusOr<std::unique_ptr<Engine>> OpenSqliteEngine(const std::string& path,
                                                         EngineOptions options,
                                                         const SqliteOptions& sqlite) {
  if (path.empty())
    return absl::InvalidArgumentError("OpenSqliteEngine: an SQLite engine needs a path");
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStorage> storage, SqliteStorage::Open(path, sqlite));
  if (options.queued.queue == nullptr) {
    // The queue beside the documents, as durable as they are. Its own file:
    // two connections writing one SQLite file wait for each other's locks
    // in SQLite's busy handler (sleeps of milliseconds).
    SqliteQueueOptions queue_options;
    switch (sqlite.synchronous) {
      case SqliteOptions::Synchronous::kOff:
        queue_options.synchronous = SqliteQueueOptions::Synchronous::kOff;
        break;
      case SqliteOptions::Synchronous::kNormal:
        queue_options.synchronous = SqliteQueueOptions::Synchronous::kNormal;
        break;
      case SqliteOptions::Synchronous::kFull:
        queue_options.synchronous = SqliteQueueOptions::Synchronous::kFull;
        break;
    }
    TXFN_ASSIGN_OR_RETURN(std::unique_ptr<SqliteQueue> queue,
                          SqliteQueue::Open(SqliteQueuePath(path), queue_options));
    BlobStore* blobs = &queue->blob_store();
    options.queued.queue = std::move(queue);
    if (options.queued.blobs == nullptr) options.queued.blobs = blobs;
  }
  return Engine::Open(std::move(storage), std::move(options));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(EngineOptions options) {
  if (options.custom_storage != nullptr) {
    std::shared_ptr<Storage> storage = options.custom_storage;
    return Open(std::move(storage), std::move(options));
  }
  if (options.storage == EngineStorage::kMemory) {
    return Open(std::make_shared<InMemoryStorage>(), std::move(options));
  }
  const std::string path = options.path;
  const SqliteOptions sqlite = options.sqlite;
  return OpenSqliteEngine(path, std::move(options), sqlite);
}

}  // namespace txfn
