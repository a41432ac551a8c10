// txfn/call.h — one queued function call: what the durable queue stores, the
// submitter validates and the scheduler runs.
//
// A Call names a tenant's function and its arguments, when it may start
// (`start_after`), by when it must have run (`deadline`, 1 s to 24 h after the
// start), how much it matters (`criticality`), which quota pays for it
// (reserved: runs promptly; opportunistic: may be shifted into quiet periods,
// never past its deadline) and how it is retried. Its id is a 128-bit UUID
// and is also its shard key: random (CallIdGenerator, version 4), derived from
// an idempotency key (FromKey, version 8), or, for the engine's calls, a
// version-8 id whose first 32 bits are the tenant's tag (TenantCallId in
// call_records.h: a tenant's calls lie together, and share their first 8 hex
// digits).
//
//   txfn::CallIdGenerator ids;                       // seeded from entropy
//   txfn::Call call{.id = ids.Next(), .tenant = "shop", .function = "mail:send",
//                   .args = txfn::Value::String("ann"),
//                   .start_after = clock.Now(),
//                   .deadline = clock.Now() + absl::Hours(1),
//                   .quota = txfn::QuotaClass::kOpportunistic};
//   absl::Status ok = txfn::ValidateCall(call);      // InvalidArgument names the field
//   std::string stored = txfn::EncodeCall(call);     // what durable adapters keep
//
// Thread safety: Call and CallId are plain values; CallIdGenerator is not
// thread-safe (one per thread, or guard it).
#ifndef TXFN_CALL_H_
#define TXFN_CALL_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txfn/value.h"

namespace txfn {

// A call's id: a 128-bit UUID (RFC 9562 layout). Random ids are version 4;
// ids derived from an idempotency key (FromKey) are version 8. The nil id
// (all zero) means "not set".
class CallId {
 public:
  constexpr CallId() = default;
  constexpr CallId(uint64_t hi, uint64_t lo) : hi_(hi), lo_(lo) {}

  // A version-8 id derived from `scope` and `key` by a fixed 128-bit hash
  // (stable across processes and builds): the same (scope, key) always gives
  // the same id, so a resubmission with the same idempotency key is a
  // duplicate the queue recognises.
  [[nodiscard]] static CallId FromKey(std::string_view scope, std::string_view key);

  // Parses the canonical text form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
  // (hex, either case). InvalidArgument otherwise (the message quotes at most
  // 64 bytes of the input).
  [[nodiscard]] static absl::StatusOr<CallId> Parse(std::string_view text);
  // The 16 big-endian bytes of Bytes(); InvalidArgument for another length.
  [[nodiscard]] static absl::StatusOr<CallId> FromBytes(std::string_view bytes);

  uint64_t hi() const { return hi_; }
  uint64_t lo() const { return lo_; }
  bool IsNil() const { return hi_ == 0 && lo_ == 0; }
  // The UUID version nibble (4 random, 8 derived).
  int version() const { return static_cast<int>((hi_ >> 12) & 0xf); }
  // Not nil, RFC 9562 variant (0b10), version 4 or 8.
  bool IsValid() const;

  // Canonical lower-case text form, 36 characters.
  std::string ToString() const;
  // 16 bytes, big-endian: byte order == id order.
  std::string Bytes() const;

  friend bool operator==(const CallId&, const CallId&) = default;
  friend bool operator<(const CallId& a, const CallId& b) {
    return a.hi_ != b.hi_ ? a.hi_ < b.hi_ : a.lo_ < b.lo_;
  }
  friend bool operator>(const CallId& a, const CallId& b) { return b < a; }
  friend bool operator<=(const CallId& a, const CallId& b) { return !(b < a); }
  friend bool operator>=(const CallId& a, const CallId& b) { return !(a < b); }
  template <typename H>
  friend H AbslHashValue(H h, const CallId& id) {
    return H::combine(std::move(h), id.hi_, id.lo_);
  }

 private:
  uint64_t hi_ = 0;
  uint64_t lo_ = 0;
};

// Makes random version-4 CallIds. Seeded from std::random_device by default;
// a fixed seed gives a repeatable sequence (the simulator's determinism).
// Not thread-safe.
class CallIdGenerator {
 public:
  CallIdGenerator();
  explicit CallIdGenerator(uint64_t seed) : rng_(seed) {}
  [[nodiscard]] CallId Next();

 private:
  std::mt19937_64 rng_;
};

// How much a call matters. Higher runs first within a function's buffer.
enum class Criticality : uint8_t { kLow = 0, kNormal = 1, kHigh = 2, kCritical = 3 };
inline constexpr int kCriticalityLevels = 4;

// Which quota pays for a call (XFaaS §"time-shifting").
enum class QuotaClass : uint8_t {
  kReserved = 0,       // runs within the function's reserved quota, promptly
  kOpportunistic = 1,  // runs when workers are idle, at the latest by its deadline
};

// "low", "normal", "high", "critical"; "reserved", "opportunistic"; "unknown"
// for a value outside the enum.
std::string_view CriticalityName(Criticality c);
std::string_view QuotaClassName(QuotaClass q);
// The inverse of the names above; InvalidArgument naming the valid ones.
[[nodiscard]] absl::StatusOr<Criticality> ParseCriticality(std::string_view name);
[[nodiscard]] absl::StatusOr<QuotaClass> ParseQuotaClass(std::string_view name);

// How a failed call is retried: up to `max_attempts` deliveries in all, the
// n-th retry (n >= 1) after min(initial_backoff * multiplier^(n-1), max_backoff).
// Deterministic (no jitter): retries of calls that failed together spread
// out because their failures and start times differ.
struct RetryPolicy {
  int max_attempts = 3;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  double multiplier = 2.0;

  // The delay before the retry that follows delivery number `attempt`
  // (0-based, as in Call::attempt).
  [[nodiscard]] absl::Duration BackoffAfter(int attempt) const;
  friend bool operator==(const RetryPolicy&, const RetryPolicy&) = default;
};

struct Call {
  CallId id;              // nil: the Submitter assigns one
  std::string tenant;     // 1-64 bytes of [A-Za-z0-9_.-]
  std::string function;   // 1-256 bytes of [A-Za-z0-9_.:/$-], e.g. "mail:send"
  Value args;             // the arguments; Null when spilled
  std::string args_blob;  // non-empty: the BlobStore key holding the encoded args
  Criticality criticality = Criticality::kNormal;
  absl::Time start_after = absl::InfinitePast();  // not run before (the queue's order)
  absl::Time deadline = absl::InfinitePast();     // must have run by; 1 s - 24 h after start
  QuotaClass quota = QuotaClass::kReserved;
  int attempt = 0;  // deliveries before this one; set by the queue on Lease
  RetryPolicy retry;
  std::string idempotency_key;  // optional, <= 256 bytes, no NUL
  std::string client;           // the submitting client (rate-limit key), <= 128 bytes

  friend bool operator==(const Call&, const Call&) = default;
};

// Limits ValidateCall checks; the defaults are the (and XFaaS's).
struct CallLimits {
  absl::Duration min_deadline_window = absl::Seconds(1);
  absl::Duration max_deadline_window = absl::Hours(24);
  size_t max_args_bytes = size_t{16} << 20;  // Value::ByteSize of args
  int max_attempts = 100;
};

// Checks everything about `call` that needs no state: a valid id (not nil,
// version 4 or 8), names, a known criticality and quota class, finite
// start_after, deadline - start_after within the limits (a deadline at or
// before the start is named as such), args within max_args_bytes, their strings
// valid UTF-8, and not both inline and spilled, a sane retry policy, attempt >= 0. InvalidArgument
// naming the call (by id) and the field.
[[nodiscard]] absl::Status ValidateCall(const Call& call, const CallLimits& limits = {});
// The same checks but the id's, for a call whose id is not assigned yet (the Submitter's
// and the engine's Submit assign one after): InvalidArgument naming the call by its
// function and tenant ("call of orders:notify (tenant shop): the deadline is ..."), or
// "call: " when one of those names is the field refused.
[[nodiscard]] absl::Status ValidateCallExceptId(const Call& call, const CallLimits& limits = {});
// The name checks alone (also used for function names in configs).
[[nodiscard]] absl::Status ValidateTenantName(std::string_view tenant);
[[nodiscard]] absl::Status ValidateFunctionName(std::string_view function);

// A compact, versioned binary form of a whole Call (args in Value's binary
// encoding). DecodeCall(EncodeCall(c)) == c; DecodeCall returns
// InvalidArgument for anything EncodeCall did not produce, never crashes.
std::string EncodeCall(const Call& call);
[[nodiscard]] absl::StatusOr<Call> DecodeCall(std::string_view data);

}  // namespace txfn

#endif  // TXFN_CALL_H_
