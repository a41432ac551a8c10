// BlobStore helpers and InMemoryBlobStore; see txfn/blob_store.h.
#include "txfn/blob_store.h"

#include <string>

#include "txfn/internal/strings.h"

namespace txfn {

absl::Status ValidateBlobKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("blob key is empty");
  if (key.size() > 256) {
    return absl::InvalidArgumentError(
        internal::StrCat("blob key is ", key.size(), " bytes, more than the limit of 256"));
  }
  return absl::OkStatus();
}

absl::Status InMemoryBlobStore::Put(std::string_view key, std::string_view value) {
  if (absl::Status s = ValidateBlobKey(key); !s.ok()) return s;
  internal::MutexLock lock(&mu_);
  blobs_[internal::ToAbsl(key)] = std::string(value);
  return absl::OkStatus();
}

absl::StatusOr<std::string> InMemoryBlobStore::Get(std::string_view key) {
  internal::MutexLock lock(&mu_);
  auto it = blobs_.find(internal::ToAbsl(key));
  if (it == blobs_.end()) {
    return absl::NotFoundError(internal::StrCat("blob '", key.substr(0, 64), "' not found"));
  }
  return it->second;
}

absl::Status InMemoryBlobStore::Delete(std::string_view key) {
  internal::MutexLock lock(&mu_);
  blobs_.erase(internal::ToAbsl(key));
  return absl::OkStatus();
}

size_t InMemoryBlobStore::size() const {
  internal::MutexLock lock(&mu_);
  return blobs_.size();
}

}  // namespace txfn
