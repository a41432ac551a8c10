// txfn/sqlite_engine.h — the embedded engine on an SQLite file, in one call.
//
// Engine::Open (engine.h) takes any Storage; this is the convenience for the
// embedded durable default, in its own target (txfn::sqlite_engine) so that
// txfn::engine needs no SQLite:
//
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Engine> engine,
//                         txfn::OpenSqliteEngine("app.db"));
//
// The same as SqliteStorage::Open(path, sqlite) followed by
// Engine::Open(storage, options), with the queued calls in a SqliteQueue at
// SqliteQueuePath(path) ("<path>.queue", with the same synchronous setting)
// unless options.queued.queue is set. Reopening the files restores every
// tenant and every queued call. Back both files up together (a call
// scheduled by a mutation lives in the tenant's outbox until the queue has
// it, so a queue file older than the database only delays such calls; one
// newer may hold calls whose scheduling commit the database lost).
#ifndef TXFN_SQLITE_ENGINE_H_
#define TXFN_SQLITE_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "txfn/engine.h"
#include "txfn/sqlite_storage.h"

namespace txfn {

// Opens (creating it if missing) the SQLite database at `path` and an Engine
// on it. InvalidArgument for an empty path; SqliteStorage::Open's or
// Engine::Open's error otherwise. The engine owns the storage.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Engine>> OpenSqliteEngine(
    const std::string& path, EngineOptions options = {}, const SqliteOptions& sqlite = {});

// The queue file OpenSqliteEngine uses for the database at `path`.
[[nodiscard]] std::string SqliteQueuePath(const std::string& path);

}  // namespace txfn

#endif  // TXFN_SQLITE_ENGINE_H_
