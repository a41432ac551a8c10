// Call, CallId, validation and the binary encoding; see txfn/call.h.
#include "txfn/call.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "fmt/core.h"
#include "lib/utf8.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

using internal::StrCat;

// At most 64 bytes of untrusted text in an error message, escaped.
std::string Quote(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    if (c >= 0x20 && c < 0x7f && c != '\'') {
      out.push_back(c);
    } else {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", static_cast<unsigned char>(c));
    }
  }
  if (s.size() > 64) out += "...";
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

uint64_t LoadBigEndian(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Sets the version nibble and the RFC 9562 variant bits.
CallId Stamp(uint64_t hi, uint64_t lo, int version) {
  hi = (hi & ~uint64_t{0xf000}) | (static_cast<uint64_t>(version) << 12);
  lo = (lo & ~(uint64_t{3} << 62)) | (uint64_t{2} << 62);
  return CallId(hi, lo);
}

absl::Status CheckName(std::string_view what, std::string_view name, size_t max_bytes,
                       bool allow_empty, std::string_view extra_chars) {
  if (name.empty()) {
    if (allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError(StrCat(what, " is empty"));
  }
  if (name.size() > max_bytes) {
    return absl::InvalidArgumentError(StrCat(what, " '", Quote(name), "' is ", name.size(),
                                             " bytes, more than the limit of ", max_bytes));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-' || extra_chars.find(c) != std::string::npos;
    if (!ok) {
      return absl::InvalidArgumentError(
          StrCat(what, " '", Quote(name), "' contains the character '", Quote({&c, 1}),
                 "' (allowed: letters, digits, '_', '.', '-'",
                 extra_chars.empty() ? "" : StrCat(" and '", extra_chars, "'"), ")"));
    }
  }
  return absl::OkStatus();
}

// --- The binary encoding -------------------------------------------------
// Version byte 1, then fields in a fixed order: varints for integers
// (zig-zag for signed), length-prefixed bytes for strings, 8 raw bytes for the
// float multiplier, args as a length-prefixed Value binary encoding (empty for
// a spilled call, whose args are Null).
constexpr uint8_t kEncodingVersion = 1;

void PutVarint(std::string* out, uint64_t v) {
  char buf[10];  // 64 bits in 7-bit groups; one append (a push_back per byte costs 2x the call)
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}
void PutSigned(std::string* out, int64_t v) {
  PutVarint(out, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
void PutBytes(std::string* out, std::string_view s) {
  PutVarint(out, s.size());
  out->append(s);
}
// Times and durations as int64 nanoseconds; the infinities as the int64 extremes.
int64_t TimeNanos(absl::Time t) {
  if (t == absl::InfiniteFuture()) return std::numeric_limits<int64_t>::max();
  if (t == absl::InfinitePast()) return std::numeric_limits<int64_t>::min();
  return absl::ToUnixNanos(t);
}
absl::Time NanosTime(int64_t n) {
  if (n == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  if (n == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  return absl::FromUnixNanos(n);
}
int64_t DurationNanos(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return std::numeric_limits<int64_t>::max();
  if (d == -absl::InfiniteDuration()) return std::numeric_limits<int64_t>::min();
  return absl::ToInt64Nanoseconds(d);
}
absl::Duration NanosDuration(int64_t n) {
  if (n == std::numeric_limits<int64_t>::max()) return absl::InfiniteDuration();
  if (n == std::numeric_limits<int64_t>::min()) return -absl::InfiniteDuration();
  return absl::Nanoseconds(n);
}

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool Byte(uint8_t* v) {
    if (data_.empty()) return false;
    *v = static_cast<uint8_t>(data_.front());
    data_.remove_prefix(1);
    return true;
  }
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = 0;
      if (!Byte(&b)) return false;
      if (shift == 63 && b > 1) return false;
      result |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Signed(int64_t* v) {
    uint64_t u = 0;
    if (!Varint(&u)) return false;
    *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
    return true;
  }
  bool Int(int* v, int lo, int hi) {
    int64_t s = 0;
    if (!Signed(&s) || s < lo || s > hi) return false;
    *v = static_cast<int>(s);
    return true;
  }
  bool Bytes(std::string_view* v) {
    uint64_t n = 0;
    if (!Varint(&n) || n > data_.size()) return false;
    *v = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool String(std::string* v) {
    std::string_view s;
    if (!Bytes(&s)) return false;
    v->assign(s);
    return true;
  }
  bool Double(double* v) {
    if (data_.size() < 8) return false;
    std::memcpy(v, data_.data(), 8);
    data_.remove_prefix(8);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

}  // namespace

// --- CallId ---------------------------------------------------------------

CallId CallId::FromKey(std::string_view scope, std::string_view key) {
  // Two independent 64-bit hashes over a length-prefixed (scope, key), so
  // ("a", "bc") and ("ab", "c") differ. The mixers are RendezvousHash's,
  // fixed forever.
  std::string input = fmt::format("{}:", scope.size());
  input.append(scope);
  input.append(key);
  const uint64_t h1 = RendezvousHash::Of(input);
  const uint64_t h2 = RendezvousHash::Mix64(h1 ^ RendezvousHash::Fnv1a64(key) ^
                                            0x9e3779b97f4a7c15ULL ^ (scope.size() << 32));
  return Stamp(h1, h2, 8);
}

absl::StatusOr<CallId> CallId::Parse(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("call id '", Quote(text), "' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"));
  };
  if (text.size() != 36) return bad();
  uint64_t halves[2] = {0, 0};
  int digits = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return bad();
      continue;
    }
    int d = HexDigit(text[i]);
    if (d < 0) return bad();
    uint64_t& h = halves[digits / 16];
    h = (h << 4) | static_cast<uint64_t>(d);
    ++digits;
  }
  return CallId(halves[0], halves[1]);
}

absl::StatusOr<CallId> CallId::FromBytes(std::string_view bytes) {
  if (bytes.size() != 16) {
    return absl::InvalidArgumentError(
        StrCat("a call id is 16 bytes, got ", bytes.size(), " bytes"));
  }
  return CallId(LoadBigEndian(bytes.data()), LoadBigEndian(bytes.data() + 8));
}

bool CallId::IsValid() const {
  const int v = version();
  return !IsNil() && (lo_ >> 62) == 2 && (v == 4 || v == 8);
}

std::string CallId::ToString() const {
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi_ >> 32, (hi_ >> 16) & 0xffff,
                     hi_ & 0xffff, lo_ >> 48, lo_ & 0xffffffffffffULL);
}

std::string CallId::Bytes() const {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>(hi_ >> (56 - 8 * i));
    out[8 + i] = static_cast<char>(lo_ >> (56 - 8 * i));
  }
  return out;
}

CallIdGenerator::CallIdGenerator() {
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd()};
  rng_.seed(seq);
}

CallId CallIdGenerator::Next() {
  const uint64_t hi = rng_();
  const uint64_t lo = rng_();
  return Stamp(hi, lo, 4);
}

// --- Names -----------------------------------------------------------------

std::string_view CriticalityName(Criticality c) {
  switch (c) {
    case Criticality::kLow:
      return "low";
    case Criticality::kNormal:
      return "normal";
    case Criticality::kHigh:
      return "high";
    case Criticality::kCritical:
      return "critical";
  }
  return "unknown";
}

std::string_view QuotaClassName(QuotaClass q) {
  switch (q) {
    case QuotaClass::kReserved:
      return "reserved";
    case QuotaClass::kOpportunistic:
      return "opportunistic";
  }
  return "unknown";
}

absl::StatusOr<Criticality> ParseCriticality(std::string_view name) {
  for (int i = 0; i < kCriticalityLevels; ++i) {
    auto c = static_cast<Criticality>(i);
    if (CriticalityName(c) == name) return c;
  }
  return absl::InvalidArgumentError(
      StrCat("unknown criticality '", Quote(name), "' (valid: low, normal, high, critical)"));
}

absl::StatusOr<QuotaClass> ParseQuotaClass(std::string_view name) {
  if (name == "reserved") return QuotaClass::kReserved;
  if (name == "opportunistic") return QuotaClass::kOpportunistic;
  return absl::InvalidArgumentError(
      StrCat("unknown quota class '", Quote(name), "' (valid: reserved, opportunistic)"));
}

absl::Duration RetryPolicy::BackoffAfter(int attempt) const {
  if (attempt < 0) attempt = 0;
  const double factor = std::pow(multiplier, std::min(attempt, 1000));
  const double seconds = absl::ToDoubleSeconds(initial_backoff) * factor;
  if (!std::isfinite(seconds) || seconds >= absl::ToDoubleSeconds(max_backoff)) return max_backoff;
  return absl::Seconds(seconds);
}

// --- Validation ---------------------------------------------------------------

absl::Status ValidateTenantName(std::string_view tenant) {
  return CheckName("tenant name", tenant, 64, /*allow_empty=*/false, "");
}

absl::Status ValidateFunctionName(std::string_view function) {
  return CheckName("function name", function, 256, /*allow_empty=*/false, ":/$");
}

namespace {

// Everything ValidateCall checks but the id: InvalidArgument with the field's error alone.
absl::Status CheckAllButId(const Call& call, const CallLimits& limits) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (absl::Status s = ValidateTenantName(call.tenant); !s.ok())
    return bad(std::string(s.message()));
  if (absl::Status s = ValidateFunctionName(call.function); !s.ok()) {
    return bad(std::string(s.message()));
  }
  if (absl::Status s = CheckName("client name", call.client, 128, /*allow_empty=*/true, ":/@");
      !s.ok()) {
    return bad(std::string(s.message()));
  }
  if (call.idempotency_key.size() > 256) {
    return bad(StrCat("the idempotency key is ", call.idempotency_key.size(),
                      " bytes, more than the limit of 256"));
  }
  if (call.idempotency_key.find('\0') != std::string::npos) {
    return bad("the idempotency key contains a NUL byte");
  }
  const auto crit = static_cast<int>(call.criticality);
  if (crit < 0 || crit >= kCriticalityLevels) {
    return bad(StrCat("unknown criticality ", crit, " (valid: 0 low .. 3 critical)"));
  }
  const auto quota = static_cast<int>(call.quota);
  if (quota != static_cast<int>(QuotaClass::kReserved) &&
      quota != static_cast<int>(QuotaClass::kOpportunistic)) {
    return bad(StrCat("unknown quota class ", quota, " (valid: 0 reserved, 1 opportunistic)"));
  }
  if (call.start_after == absl::InfinitePast() || call.start_after == absl::InfiniteFuture()) {
    return bad("start_after is not set (an infinite time)");
  }
  if (call.deadline == absl::InfinitePast() || call.deadline == absl::InfiniteFuture()) {
    return bad(StrCat("the deadline is not set (an infinite time): a call must end between ",
                      absl::FormatDuration(limits.min_deadline_window), " and ",
                      absl::FormatDuration(limits.max_deadline_window), " after its start"));
  }
  // Queues store times as int64 nanoseconds since the Unix epoch (EncodeCall, the SQL
  // adapters): a time outside them would be stored as another (an infinity), the call then
  // never due, or due without a deadline.
  const absl::Time earliest = absl::FromUnixNanos(std::numeric_limits<int64_t>::min() + 1);
  const absl::Time latest = absl::FromUnixNanos(std::numeric_limits<int64_t>::max() - 1);
  for (const auto& [what, t] :
       {std::pair{"start_after", call.start_after}, std::pair{"the deadline", call.deadline}}) {
    if (t < earliest || t > latest) {
      return bad(StrCat(what, " (", absl::FormatTime(t, absl::UTCTimeZone()),
                        ") is outside the times a queue stores (",
                        absl::FormatTime("%Y-%m-%d", earliest, absl::UTCTimeZone()), " to ",
                        absl::FormatTime("%Y-%m-%d", latest, absl::UTCTimeZone()), ")"));
    }
  }
  if (call.deadline <= call.start_after) {
    return bad(StrCat("the deadline (", absl::FormatTime(call.deadline, absl::UTCTimeZone()),
                      ") is not after the start (",
                      absl::FormatTime(call.start_after, absl::UTCTimeZone()), ")"));
  }
  const absl::Duration window = call.deadline - call.start_after;
  if (window < limits.min_deadline_window || window > limits.max_deadline_window) {
    return bad(StrCat("the deadline is ", absl::FormatDuration(window),
                      " after the start; it must be between ",
                      absl::FormatDuration(limits.min_deadline_window), " and ",
                      absl::FormatDuration(limits.max_deadline_window)));
  }
  if (!call.args_blob.empty()) {
    if (!call.args.is_null()) return bad("args are both inline and spilled (args_blob is set)");
    if (call.args_blob.size() > 256) return bad("the args_blob key is over 256 bytes");
  } else if (const size_t size = call.args.ByteSize(); size > limits.max_args_bytes) {
    return bad(StrCat("args are ", size, " bytes, more than the limit of ", limits.max_args_bytes));
  } else if (absl::Status s = internal::CheckUtf8(call.args, "args"); !s.ok()) {
    return bad(std::string(s.message()));
  }
  const RetryPolicy& r = call.retry;
  if (r.max_attempts < 1 || r.max_attempts > limits.max_attempts) {
    return bad(StrCat("retry.max_attempts is ", r.max_attempts, "; it must be between 1 and ",
                      limits.max_attempts));
  }
  if (r.initial_backoff < absl::ZeroDuration() || r.max_backoff < r.initial_backoff ||
      r.max_backoff > absl::Hours(24)) {
    return bad("retry backoffs must satisfy 0 <= initial_backoff <= max_backoff <= 24h");
  }
  if (!std::isfinite(r.multiplier) || r.multiplier < 1.0 || r.multiplier > 100.0) {
    return bad(StrCat("retry.multiplier is ", r.multiplier, "; it must be in [1, 100]"));
  }
  if (call.attempt < 0) return bad(StrCat("attempt is negative (", call.attempt, ")"));
  return absl::OkStatus();
}

absl::Status Prefixed(absl::Status status, std::string_view prefix) {
  if (status.ok()) return status;
  return absl::InvalidArgumentError(StrCat(prefix, status.message()));
}

}  // namespace

absl::Status ValidateCall(const Call& call, const CallLimits& limits) {
  const std::string prefix = StrCat("call ", call.id.ToString(), ": ");
  if (call.id.IsNil()) {
    return absl::InvalidArgumentError(
        StrCat(prefix, "the id is nil (the Submitter assigns ids; adapters need one)"));
  }
  if (!call.id.IsValid()) {
    return absl::InvalidArgumentError(
        StrCat(prefix, "the id is not a version 4 (random) or 8 (derived) RFC 9562 UUID (version ",
               call.id.version(), ")"));
  }
  return Prefixed(CheckAllButId(call, limits), prefix);
}

absl::Status ValidateCallExceptId(const Call& call, const CallLimits& limits) {
  const bool named =
      ValidateTenantName(call.tenant).ok() && ValidateFunctionName(call.function).ok();
  return Prefixed(CheckAllButId(call, limits),
                  named ? StrCat("call of ", call.function, " (tenant ", call.tenant, "): ")
                        : std::string("call: "));
}

// --- Encoding -------------------------------------------------------------------

std::string EncodeCall(const Call& call) {
  std::string out;
  out.reserve(96 + call.tenant.size() + call.function.size());
  out.push_back(static_cast<char>(kEncodingVersion));
  out.append(call.id.Bytes());
  PutBytes(&out, call.tenant);
  PutBytes(&out, call.function);
  PutBytes(&out, call.args_blob.empty() ? EncodeBinary(call.args) : std::string());
  PutBytes(&out, call.args_blob);
  PutSigned(&out, static_cast<int64_t>(call.criticality));
  PutSigned(&out, TimeNanos(call.start_after));
  PutSigned(&out, TimeNanos(call.deadline));
  PutSigned(&out, static_cast<int64_t>(call.quota));
  PutSigned(&out, call.attempt);
  PutSigned(&out, call.retry.max_attempts);
  PutSigned(&out, DurationNanos(call.retry.initial_backoff));
  PutSigned(&out, DurationNanos(call.retry.max_backoff));
  char mult[8];
  std::memcpy(mult, &call.retry.multiplier, 8);
  out.append(mult, 8);
  PutBytes(&out, call.idempotency_key);
  PutBytes(&out, call.client);
  return out;
}

absl::StatusOr<Call> DecodeCall(std::string_view data) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(StrCat("not an encoded call: ", what));
  };
  Reader r(data);
  uint8_t version = 0;
  if (!r.Byte(&version)) return bad("empty");
  if (version != kEncodingVersion) return bad(StrCat("unknown encoding version ", version));
  Call call;
  std::string_view id_bytes;
  if (data.size() < 17) return bad("too short for an id");
  id_bytes = data.substr(1, 16);
  call.id = *CallId::FromBytes(id_bytes);
  Reader rest(data.substr(17));
  std::string_view args;
  int64_t start = 0, deadline = 0, initial = 0, max = 0;
  int crit = 0, quota = 0;
  if (!rest.String(&call.tenant) || !rest.String(&call.function) || !rest.Bytes(&args) ||
      !rest.String(&call.args_blob) || !rest.Int(&crit, 0, 255) || !rest.Signed(&start) ||
      !rest.Signed(&deadline) || !rest.Int(&quota, 0, 255) ||
      !rest.Int(&call.attempt, 0, std::numeric_limits<int>::max()) ||
      !rest.Int(&call.retry.max_attempts, 0, std::numeric_limits<int>::max()) ||
      !rest.Signed(&initial) || !rest.Signed(&max) || !rest.Double(&call.retry.multiplier) ||
      !rest.String(&call.idempotency_key) || !rest.String(&call.client)) {
    return bad("truncated or malformed field");
  }
  if (!rest.done()) return bad("trailing bytes");
  call.criticality = static_cast<Criticality>(crit);
  call.quota = static_cast<QuotaClass>(quota);
  call.start_after = NanosTime(start);
  call.deadline = NanosTime(deadline);
  call.retry.initial_backoff = NanosDuration(initial);
  call.retry.max_backoff = NanosDuration(max);
  if (call.args_blob.empty()) {
    TXFN_ASSIGN_OR_RETURN(call.args, DecodeBinary(args));
  } else if (!args.empty()) {
    return bad("a spilled call with inline args");
  }
  return call;
}

}  // namespace txfn
