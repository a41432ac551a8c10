// The engine on PostgreSQL (txfn/postgres_engine.h).
#include "txfn/postgres_engine.h"

#include <utility>

#include "txfn/postgres_queue.h"
#include "txfn/status_macros.h"

namespace txfn {

absl::StatusOr<std::unique_ptr<Engine>> OpenPostgresEngine(const std::string& url,
                                                           EngineOptions options,
                                                           PostgresStorageOptions storage) {
  storage.url = url;
  TXFN_ASSIGN_OR_RETURN(std::unique_ptr<PostgresStorage> opened,
                        PostgresStorage::Open(std::move(storage)));
  if (options.queued.queue == nullptr) {
    TXFN_ASSIGN_OR_RETURN(options.queued.queue, PostgresQueue::Open({.url = url}));
  }
  return Engine::Open(std::move(opened), std::move(options));
}

}  // namespace txfn
