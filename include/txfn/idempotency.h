// txfn/idempotency.h — idempotency keys: a retried mutation commits at most once.
//
// After an unknown commit outcome (IsCommitOutcomeUnknown) or a crash, a host
// cannot know whether its mutation committed; retrying it blindly could apply
// it twice (a double transfer). With an idempotency key per logical
// operation, the key is committed atomically with the mutation's writes, and
// a later attempt with the same key finds it and returns the first result
// instead of running again:
//
//   TXFN_ASSIGN_OR_RETURN(std::optional<txfn::IdempotentResult> first,
//                         txfn::FindIdempotencyKey(*committer->Latest(), key));
//   if (first.has_value()) return first->value;           // committed before
//   txfn::Transaction txn(committer->Latest());
//   ... run the mutation, producing `result` ...
//   txfn::PreparedCommit commit = txn.Prepare();
//   TXFN_RETURN_IF_ERROR(txfn::AddIdempotencyKey(key, result, &commit));
//   committer->Commit(std::move(commit));  // Aborted if another attempt took the key: look again
//
// The engine does this for Engine::Mutation with MutationOptions::
// idempotency_key. Keys are per tenant. A key is also a read, so two attempts
// racing with one key conflict and one of them finds the other's result.
//
// Storage: each key is one entry of the tenant's reserved index
// kIdempotencyIndex (key bytes -> 0xff, the call digest's length and bytes, then
// the result's binary encoding; before 2026-12-05 the result's encoding alone,
// still read; the entry's commit timestamp is the first commit's).
//
// A key stands for one call: the engine stores a digest of the mutation's
// function and arguments with it, and a later call with the key and another
// function or other arguments (a client that reused a key) is refused with
// AlreadyExists instead of answered with the first call's result. No
// downgrade: a version before 2026-12-05 reads an entry with a digest as
// corrupt (DataLoss for that key), so do not run an older engine on a
// database a newer one has written keys to. Choose one key per logical
// operation, not per request.
//
// Keys are kept like documents (version retention never drops a live entry)
// until something deletes them: the engine deletes a key once it is
// EngineOptions::idempotency_key_retention (24 h) old, in a pass up to an hour
// later, and a call with it then runs again. A host on a bare committer keeps
// them until it deletes them (Transaction::PutReserved(kIdempotencyIndex, key,
// nullopt)).
//
// Thread safety: free functions without shared state; a Snapshot is
// thread-safe, a PreparedCommit belongs to its caller.
#ifndef TXFN_IDEMPOTENCY_H_
#define TXFN_IDEMPOTENCY_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/snapshot.h"
#include "txfn/storage.h"
#include "txfn/transaction.h"
#include "txfn/value.h"

namespace txfn {

// The index of a tenant that holds its idempotency keys. Table and index ids
// are allocated upwards from 1 and never reach it.
inline constexpr IndexId kIdempotencyIndex = 0xffffffffu;

// Keys are 1..kMaxIdempotencyKeyBytes bytes of anything.
inline constexpr size_t kMaxIdempotencyKeyBytes = 256;

// The result of the commit that first used a key.
struct IdempotentResult {
  Value value;       // the mutation's return value
  Timestamp ts = 0;  // its commit timestamp
  // What AddIdempotencyKey stored to tell the call that used the key (the engine: a digest of
  // its function and arguments); empty if nothing was.
  std::string call_digest;
  friend bool operator==(const IdempotentResult&, const IdempotentResult&) = default;
};

// InvalidArgument unless 1 <= key.size() <= kMaxIdempotencyKeyBytes.
[[nodiscard]] absl::Status ValidateIdempotencyKey(std::string_view key);

// The first result committed with `key` at or before the snapshot, or
// nullopt. InvalidArgument for a bad key; DataLoss if the stored result does
// not decode; the storage's error otherwise.
[[nodiscard]] absl::StatusOr<std::optional<IdempotentResult>> FindIdempotencyKey(
    const Snapshot& snapshot, std::string_view key);

// Makes `commit` record `key` with `result`, and `call_digest` (at most 255
// bytes; empty: none) for a later caller to compare: a write of the key (so the
// commit's writes stay sorted, it comes last) and a point read of it (so a
// commit racing with the same key conflicts). InvalidArgument for a bad key,
// a digest over 255 bytes or a commit that already records one; `commit` is
// unchanged on error.
[[nodiscard]] absl::Status AddIdempotencyKey(std::string_view key, const Value& result,
                                             PreparedCommit* commit,
                                             std::string_view call_digest = {});

}  // namespace txfn

#endif  // TXFN_IDEMPOTENCY_H_
