// txfn/postgres_engine.h — the engine on a PostgreSQL database: PostgresStorage for the
// tenants' data (txfn/postgres_storage.h) and PostgresQueue for queued calls
// (txfn/postgres_queue.h), both in the database `url` names. Several processes may open
// engines on one database. Each tenant is written by one of them at a time, its owner (the
// storage's lease; the first engine to commit to a free tenant takes it). The others:
//   - serve its queries at its newest commit (published timestamps): while an engine does
//     not hold a tenant's lease, each call first reads the tenant's newest commit timestamp
//     (one round trip) and reloads its snapshot if the owner committed since;
//   - refuse its mutations with Unavailable naming the owner and when its lease ends
//     (not forwarded; nothing is written), until the owner's lease expires (it died or
//     stalled: PostgresStorageOptions::lease_duration after its last commit) or it closes;
//     the next mutation then takes the tenant over, on state reloaded from the database
//     (no commit of the former owner is lost, none applied twice: tested with a killed
//     owner process in postgres_engine_takeover_test).
// Queued calls are shared: any engine may run any tenant's (a mutation among them is
// refused like any other while another engine owns the tenant).
//
//   TXFN_ASSIGN_OR_RETURN(std::unique_ptr<txfn::Engine> engine,
//       txfn::OpenPostgresEngine("postgresql:///txfn?host=/run/postgresql"));
//
// Thread safety: a free function; the engine is as Engine documents.
#ifndef TXFN_POSTGRES_ENGINE_H_
#define TXFN_POSTGRES_ENGINE_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "txfn/engine.h"
#include "txfn/postgres_storage.h"

namespace txfn {

// Opens (creating their tables if missing) the storage and, unless options.queued.queue is
// set, the queue, then the engine. Errors: the storage's, the queue's and Engine::Open's.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Engine>> OpenPostgresEngine(
    const std::string& url, EngineOptions options = {}, PostgresStorageOptions storage = {});

// Whether `db` names a PostgreSQL database (a postgresql:// or postgres:// URI) rather than a
// file: how txfn's tools read --db.
// (Inline: tools built without PostgreSQL use it to refuse such a --db clearly.)
[[nodiscard]] inline bool IsPostgresUrl(std::string_view db) {
  return db.starts_with("postgresql://") || db.starts_with("postgres://");
}

}  // namespace txfn

#endif  // TXFN_POSTGRES_ENGINE_H_
