// txfn/call_records.h — what a tenant's own storage keeps about its queued
// calls: the calls its mutations scheduled, and how each call ended.
//
// The engine runs queued calls (Engine::Submit, ctx.scheduler.runAfter) on
// the durable queue, whose delivery is at-least-once. Exactly-once effects
// come from two records kept in the tenant's storage, written in the same
// transactions as the tenant's documents:
//
//   outbox  (kCallOutboxIndex, call id -> ScheduledCall): a mutation that
//           calls ctx.scheduler.runAfter/runAt writes the call here, in its
//           own commit. Only a committed mutation has an outbox entry, so an
//           aborted or retried attempt schedules nothing. The engine enqueues
//           outbox entries after the commit (and again, idempotently, after a
//           crash: Engine::Open re-enqueues every outbox entry) and removes
//           them once they are in the queue.
//   record  (kCallRecordIndex, call id -> CallRecord): how the call ended. A
//           queued mutation's record commits with its writes (and reads the
//           record's key, so a racing cancel conflicts with it); a call
//           delivered again finds the record and is acknowledged without
//           running. Cancelling writes a kCancelled record the same way.
//
//   txfn::Transaction txn(snapshot);
//   TXFN_ASSIGN_OR_RETURN(txfn::CallId id,
//       txfn::ScheduleCall(txn, {.function = "mail:send", .args = args,
//                                .delay = absl::Seconds(5)},
//                          absl::Uniform<uint64_t>(bitgen), absl::Uniform<uint64_t>(bitgen)));
//   ...                                            // commit txn
//   TXFN_ASSIGN_OR_RETURN(std::optional<txfn::CallRecord> done,
//                         txfn::FindCallRecord(*later_snapshot, id));
//
// Call ids of the engine carry a 32-bit tag of their tenant's name
// (TenantCallId), so Engine::GetCall(id) finds the tenant of a call the queue
// no longer holds without any directory.
//
// Thread safety: free functions and plain values; a Snapshot is thread-safe,
// a Transaction or PreparedCommit belongs to its caller.
#ifndef TXFN_CALL_RECORDS_H_
#define TXFN_CALL_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/call.h"
#include "txfn/snapshot.h"
#include "txfn/transaction.h"
#include "txfn/value.h"

namespace txfn {

// The reserved indexes (Transaction::GetReserved) of the two records.
inline constexpr IndexId kCallRecordIndex = 0xfffffffeu;
inline constexpr IndexId kCallOutboxIndex = 0xfffffffdu;

// The most calls one transaction may schedule (as Convex).
inline constexpr size_t kMaxScheduledPerTransaction = 1000;
// The longest delay txfn accepts from JavaScript, ten years: a scheduled
// call's (runAfter; runAt from Date.now()), and a function's deadline and
// backoff attributes.
inline constexpr absl::Duration kMaxScheduleDelay = absl::Hours(24 * 365 * 10);

// A call id of `tenant` (version 8): its first 32 bits are TenantTag(tenant),
// the rest comes from `a` and `b` (random bits, or a hash of an idempotency
// key).
[[nodiscard]] CallId TenantCallId(std::string_view tenant, uint64_t a, uint64_t b);
// A stable 32-bit hash of a tenant name (the same in every process).
[[nodiscard]] uint32_t TenantTag(std::string_view tenant);
// The tag an id made by TenantCallId carries.
[[nodiscard]] inline uint32_t TenantTagOf(const CallId& id) {
  return static_cast<uint32_t>(id.hi() >> 32);
}

// The ids TenantCallId makes for a tenant lie strictly between `after` (the
// last id of the tag below; nil for tag 0) and `before` (the first id of the
// tag above; none for the highest tag): bounds for a walk of ids in order
// (the engine's ListCalls bounds its queue's with them).
struct CallIdRange {
  CallId after;
  std::optional<CallId> before;
};
[[nodiscard]] CallIdRange TenantCallIdRange(std::string_view tenant);

// Where a call is in its life, as Engine::GetCall reports it.
enum class CallState : uint8_t {
  kPending,       // waiting in the queue (or in a tenant's outbox, about to be)
  kRunning,       // leased by a scheduler, running or about to
  kSucceeded,     // its function returned; the result is kept
  kFailed,        // its function failed (threw, bad arguments, a limit): not retried
  kDeadLettered,  // the queue gave up: its deadline passed or its attempts ran out
  kCancelled,     // cancelled before it ran
};
// "pending", "running", "succeeded", "failed", "dead_lettered", "cancelled".
std::string_view CallStateName(CallState state);
// The inverse; InvalidArgument naming the valid names.
[[nodiscard]] absl::StatusOr<CallState> ParseCallState(std::string_view name);

// How a call ended (kSucceeded, kFailed or kCancelled), or that the queue
// gave up on it (kDeadLettered: written when the engine first reports the
// dead letter, so a delivery still running then can no longer commit).
struct CallRecord {
  CallState state = CallState::kSucceeded;
  std::string function;
  Value result;  // kSucceeded: the function's return value (null if dropped, below)
  // kSucceeded: the result was not kept, being this many bytes (Value::ByteSize), over the
  // engine's QueuedCallOptions::max_recorded_result_bytes. 0: kept.
  uint64_t result_dropped_bytes = 0;
  // kFailed: why: the code, the message and what the code threw (GetAppError, its data up to
  // 64 KiB); no other payloads (no logs).
  absl::Status error;
  absl::Time finished;  // when the record was written
  int attempts = 0;     // deliveries that began (0 for a cancel before any)
  // A keyed call's (Call::idempotency_key): ArgsDigest of its arguments, so that a Submit of
  // its key with other arguments is refused after the call ended too. Empty: not recorded (a
  // call without a key; a record older than the field; a dead letter or a cancel whose
  // spilled arguments could not be read for it). Advisory: a "d" field that is not 16 bytes
  // decodes as empty.
  std::string args_digest;
  friend bool operator==(const CallRecord&, const CallRecord&) = default;
};

// A digest of `args` that is the same in every process and build (16 bytes: CallId::FromKey's
// two stable 64-bit hashes over the arguments' binary encoding). Not cryptographic: a tenant
// could make two of its own calls' arguments look alike, and only mislead itself.
[[nodiscard]] std::string ArgsDigest(const Value& args);
// The same of EncodeBinary(args) as it is (spilled arguments, unread).
[[nodiscard]] std::string ArgsDigestOfEncoding(std::string_view encoded_args);
// A keyed call's ArgsDigest; empty for a call without an idempotency key, or whose arguments
// were spilled and not loaded (args_blob set, args null).
[[nodiscard]] std::string KeyedArgsDigest(const Call& call);

std::string EncodeCallRecord(const CallRecord& record);
// InvalidArgument for bytes EncodeCallRecord did not produce.
[[nodiscard]] absl::StatusOr<CallRecord> DecodeCallRecord(std::string_view bytes);

// The record of `id` at the snapshot, or nullopt. DataLoss if it does not
// decode; the storage's error otherwise.
[[nodiscard]] absl::StatusOr<std::optional<CallRecord>> FindCallRecord(const Snapshot& snapshot,
                                                                       const CallId& id);
// Makes `commit` write `record` for `id` and read its key (so a commit
// racing with another record of the call conflicts), keeping the commit's
// writes sorted. InvalidArgument if the commit already writes that record.
[[nodiscard]] absl::Status AddCallRecord(const CallId& id, const CallRecord& record,
                                         PreparedCommit* commit);

// A call a mutation scheduled: what its outbox entry holds.
struct ScheduledCall {
  CallId id;  // set by ScheduleCall
  std::string function;
  Value args;  // an object (or null: {})
  // When it may start: `delay` after the scheduling mutation committed
  // (runAfter), or at `at` (runAt). Exactly one is set.
  std::optional<absl::Duration> delay;
  std::optional<absl::Time> at;
  friend bool operator==(const ScheduledCall&, const ScheduledCall&) = default;
};

std::string EncodeScheduledCall(const ScheduledCall& call);
[[nodiscard]] absl::StatusOr<ScheduledCall> DecodeScheduledCall(std::string_view bytes);

// Schedules `call` in `txn`: gives it a TenantCallId from `a` and `b` and
// writes its outbox entry. InvalidArgument for a bad function name, args that
// are not an object, a negative delay or not exactly one of delay/at, more
// than kMaxScheduledPerTransaction calls in one transaction, a read-only
// transaction; ResourceExhausted past the transaction's bytes written.
[[nodiscard]] absl::StatusOr<CallId> ScheduleCall(Transaction& txn, ScheduledCall call, uint64_t a,
                                                  uint64_t b);
// Cancels `id` in `txn`: a call scheduled earlier in `txn` just disappears;
// otherwise a kCancelled record is written unless the call already has a
// record (then nothing changes and the existing record is returned), or
// `replace_dead_letter` and the record is a kDeadLettered one (a dead letter
// Redrive put back: the cancel replaces it). `now` stamps the record. It
// names the call's function (a replaced dead letter's, an outbox entry's, else
// `function`: the queued call's, if the caller knows it) and keeps
// `args_digest` (KeyedArgsDigest of the call, if known; else a replaced dead
// letter's).
[[nodiscard]] absl::StatusOr<std::optional<CallRecord>> CancelCallInTransaction(
    Transaction& txn, const CallId& id, absl::Time now, bool replace_dead_letter = false,
    std::string_view function = {}, std::string_view args_digest = {});
// Whether CancelCallInTransaction(txn, id, ..., replace_dead_letter) would
// write a record (the call has none yet, or a dead letter to replace): for a
// caller that caps how many it writes. A read of `txn`.
[[nodiscard]] absl::StatusOr<bool> CancelWritesRecord(Transaction& txn, const CallId& id,
                                                      bool replace_dead_letter);

// Every outbox entry of the tenant at the snapshot, in id order.
[[nodiscard]] absl::StatusOr<std::vector<ScheduledCall>> ListOutbox(const Snapshot& snapshot);
// The outbox entries `commit` writes (the calls it schedules).
[[nodiscard]] absl::StatusOr<std::vector<ScheduledCall>> ScheduledBy(const PreparedCommit& commit);

// A function's scheduling attributes, declared with its wrapper:
//   export const send = mutation({handler, criticality: "high",
//       quota: "opportunistic", maxConcurrency: 4, deadlineMs: 3600000,
//       retry: {maxAttempts: 5, initialBackoffMs: 1000, maxBackoffMs: 60000},
//       services: ["mail"], reservedCpuQuota: 2, opportunisticRate: 50});
// Every field is optional. reservedCpuQuota: CPU-seconds per second for its
// reserved calls; opportunisticRate: its opportunistic calls per second at
// S = 1 (call_scheduler.h); unset: the engine's defaults.
struct FunctionAttributes {
  Criticality criticality = Criticality::kNormal;
  QuotaClass quota = QuotaClass::kReserved;
  int64_t max_concurrency = 0;               // 0: no limit of its own
  absl::Duration deadline = absl::Hours(1);  // after the start; 1 s .. 24 h
  RetryPolicy retry;
  std::vector<std::string> services;         // downstream services it calls
  std::optional<double> reserved_cpu_quota;  // > 0
  std::optional<double> opportunistic_rate;  // >= 0
  friend bool operator==(const FunctionAttributes&, const FunctionAttributes&) = default;
};

// Reads the attributes object of a wrapper (null: the defaults).
// InvalidArgument naming the field and what it accepts.
[[nodiscard]] absl::StatusOr<FunctionAttributes> ParseFunctionAttributes(const Value& attrs);

}  // namespace txfn

#endif  // TXFN_CALL_RECORDS_H_
