// txfn/blob_store.h — where large call arguments are spilled.
//
// The Submitter stores the encoded arguments of a call larger than its spill
// threshold in a BlobStore under a key of its own (the call id and an id of
// the spill, so a duplicate submission never replaces them), and enqueues
// the call with `args_blob` set instead of the arguments; the CallScheduler
// loads them before dispatch and deletes them once the call is ACKed (XFaaS
// keeps large arguments in a separate key-value store the same way, so the
// queue's rows stay small).
//
//   txfn::InMemoryBlobStore blobs;
//   (void)blobs.Put("call/1234", big_bytes);
//   absl::StatusOr<std::string> back = blobs.Get("call/1234");
//   (void)blobs.Delete("call/1234");
//
// Adapters: InMemoryBlobStore below; SqliteQueue::blob_store() keeps blobs in
// the queue's own database file (the default next to a SqliteQueue).
//
// Thread safety: every method of every adapter may be called concurrently.
#ifndef TXFN_BLOB_STORE_H_
#define TXFN_BLOB_STORE_H_

#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/internal/mutex.h"

namespace txfn {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // Stores `value` under `key` (replacing what was there), durably when the
  // adapter is durable. InvalidArgument for an empty key or one over 256
  // bytes; Unavailable on an I/O fault (nothing stored).
  [[nodiscard]] virtual absl::Status Put(std::string_view key, std::string_view value) = 0;
  // The value under `key`; NotFound if there is none.
  [[nodiscard]] virtual absl::StatusOr<std::string> Get(std::string_view key) = 0;
  // Removes `key`; OK if it was not there.
  [[nodiscard]] virtual absl::Status Delete(std::string_view key) = 0;
};

// The key checks every adapter applies (non-empty, <= 256 bytes).
[[nodiscard]] absl::Status ValidateBlobKey(std::string_view key);

// A BlobStore in memory (tests, the simulator, InMemoryQueue's companion).
class InMemoryBlobStore final : public BlobStore {
 public:
  absl::Status Put(std::string_view key, std::string_view value) override;
  absl::StatusOr<std::string> Get(std::string_view key) override;
  absl::Status Delete(std::string_view key) override;
  // Blobs held.
  [[nodiscard]] size_t size() const;

 private:
  mutable internal::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> blobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txfn

#endif  // TXFN_BLOB_STORE_H_
