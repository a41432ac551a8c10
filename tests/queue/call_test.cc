// Call and CallId on their own: the id's text and byte forms, derived ids,
// names, backoff, the binary encoding (every prefix and a corrupted byte
// are refused, never a crash) and the ValidateCall checks the queue
// conformance suite does not reach.
#include "txfn/call.h"

#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/call_records.h"
#include "txfn/errors.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

Call FullCall() {
  CallIdGenerator ids(7);
  Call c;
  c.id = ids.Next();
  c.tenant = "shop";
  c.function = "mail:send";
  c.args = Value::String("ann");
  c.criticality = Criticality::kHigh;
  c.start_after = kT0;
  c.deadline = kT0 + absl::Hours(2);
  c.quota = QuotaClass::kOpportunistic;
  c.attempt = 2;
  c.retry = {.max_attempts = 5,
             .initial_backoff = absl::Milliseconds(250),
             .max_backoff = absl::Seconds(30),
             .multiplier = 3};
  c.idempotency_key = "order-17";
  c.client = "signup";
  return c;
}

TEST(CallIdTest, TextAndBytesRoundTripAndKeepTheOrder) {
  CallIdGenerator ids(1);
  CallId prev;
  for (int i = 0; i < 100; ++i) {
    const CallId id = ids.Next();
    EXPECT_TRUE(id.IsValid());
    EXPECT_EQ(id.version(), 4);
    const std::string text = id.ToString();
    ASSERT_EQ(text.size(), 36u);
    EXPECT_EQ(*CallId::Parse(text), id);
    EXPECT_EQ(*CallId::FromBytes(id.Bytes()), id);
    EXPECT_EQ(id < prev, id.Bytes() < prev.Bytes()) << "byte order is id order";
    prev = id;
  }
  EXPECT_EQ(*CallId::Parse("0123ABCD-0000-4000-8000-00000000000F"),
            *CallId::Parse("0123abcd-0000-4000-8000-00000000000f"))
      << "either case";
  EXPECT_TRUE(CallId().IsNil());
  EXPECT_FALSE(CallId().IsValid());
}

TEST(CallIdTest, BadTextAndBytesAreInvalidArgument) {
  for (const char* bad :
       {"", "0123abcd-0000-4000-8000-00000000000", "0123abcd00000-4000-8000-0000000000000",
        "0123abcd-0000-4000-8000-00000000000g", "0123abcd-0000-4000-8000-00000000000f0"}) {
    auto id = CallId::Parse(bad);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(id.status().message(), HasSubstr("not a UUID"));
  }
  EXPECT_THAT(CallId::Parse(std::string(1000, 'a')).status().message().size(), ::testing::Lt(200u))
      << "the message quotes at most 64 bytes";
  EXPECT_EQ(CallId::FromBytes("short").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CallId::FromBytes(std::string(17, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CallIdTest, DerivedIdsAreStableVersion8AndSeparateScopeFromKey) {
  const CallId a = CallId::FromKey("shop", "order-17");
  EXPECT_EQ(a, CallId::FromKey("shop", "order-17"));
  EXPECT_TRUE(a.IsValid());
  EXPECT_EQ(a.version(), 8);
  EXPECT_NE(a, CallId::FromKey("shop", "order-18"));
  EXPECT_NE(CallId::FromKey("a", "bc"), CallId::FromKey("ab", "c"));
}

TEST(CallTest, NamesParseBackAndUnknownNamesAreRefused) {
  for (int i = 0; i < kCriticalityLevels; ++i) {
    const auto c = static_cast<Criticality>(i);
    EXPECT_EQ(*ParseCriticality(CriticalityName(c)), c);
  }
  for (QuotaClass q : {QuotaClass::kReserved, QuotaClass::kOpportunistic}) {
    EXPECT_EQ(*ParseQuotaClass(QuotaClassName(q)), q);
  }
  EXPECT_EQ(CriticalityName(static_cast<Criticality>(9)), "unknown");
  EXPECT_EQ(QuotaClassName(static_cast<QuotaClass>(9)), "unknown");
  EXPECT_EQ(ParseCriticality("urgent").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseQuotaClass("").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CallTest, BackoffGrowsByTheMultiplierUpToTheMaximum) {
  const RetryPolicy r{.max_attempts = 10,
                      .initial_backoff = absl::Seconds(1),
                      .max_backoff = absl::Seconds(10),
                      .multiplier = 2};
  EXPECT_EQ(r.BackoffAfter(-1), absl::Seconds(1));
  EXPECT_EQ(r.BackoffAfter(0), absl::Seconds(1));
  EXPECT_EQ(r.BackoffAfter(1), absl::Seconds(2));
  EXPECT_EQ(r.BackoffAfter(3), absl::Seconds(8));
  EXPECT_EQ(r.BackoffAfter(4), absl::Seconds(10));
  EXPECT_EQ(r.BackoffAfter(1'000'000), absl::Seconds(10));
}

TEST(CallTest, TheEncodingRoundTripsEveryField) {
  const Call c = FullCall();
  EXPECT_EQ(*DecodeCall(EncodeCall(c)), c);
  Call spilled = c;
  spilled.args = Value();
  spilled.args_blob = "call/" + c.id.ToString();
  EXPECT_EQ(*DecodeCall(EncodeCall(spilled)), spilled);
  Call unset;  // infinite times survive too
  EXPECT_EQ(*DecodeCall(EncodeCall(unset)), unset);
}

TEST(CallTest, EveryTruncationAndACorruptedVersionAreRefused) {
  const std::string data = EncodeCall(FullCall());
  for (size_t n = 0; n < data.size(); ++n) {
    auto c = DecodeCall(data.substr(0, n));
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << "prefix of " << n;
    EXPECT_THAT(c.status().message(), HasSubstr("not an encoded call"));
  }
  EXPECT_EQ(DecodeCall(data + "x").status().code(), absl::StatusCode::kInvalidArgument);
  std::string other_version = data;
  other_version[0] = 9;
  EXPECT_THAT(DecodeCall(other_version).status().message(), HasSubstr("version"));
  // Any single corrupted byte decodes to something or is refused; never a crash.
  for (size_t i = 1; i < data.size(); ++i) {
    std::string bad = data;
    bad[i] = static_cast<char>(bad[i] ^ 0xff);
    (void)DecodeCall(bad);
  }
}

TEST(CallTest, ValidateCallRefusesEachBadFieldByName) {
  struct Case {
    const char* expect;
    void (*edit)(Call&);
  };
  const std::vector<Case> cases = {
      {"attempt is negative", [](Call& c) { c.attempt = -1; }},
      {"NUL", [](Call& c) { c.idempotency_key = std::string("a\0b", 3); }},
      {"args_blob key",
       [](Call& c) {
         c.args = Value();
         c.args_blob = std::string(300, 'k');
       }},
      {"args: the string at `.to[1]` is not valid UTF-8 (byte 0xff at offset 2)",
       [](Call& c) {
         c.args = Value::FromObject(
             {{"to", Value::FromArray({Value::String("ok"), Value::String("no\xff")})}});
       }},
      {"backoffs", [](Call& c) { c.retry.max_backoff = absl::Hours(25); }},
      {"backoffs", [](Call& c) { c.retry.max_backoff = c.retry.initial_backoff / 2; }},
      {"multiplier",
       [](Call& c) { c.retry.multiplier = std::numeric_limits<double>::quiet_NaN(); }},
      {"start_after is not set", [](Call& c) { c.start_after = absl::InfiniteFuture(); }},
      {"the deadline is not set (an infinite time): a call must end between 1s and 24h after",
       [](Call& c) { c.deadline = absl::InfinitePast(); }},
      {"the deadline is not set", [](Call& c) { c.deadline = absl::InfiniteFuture(); }},
      // Finite, but past what int64 nanoseconds hold: stored as an infinity, never due.
      {"start_after (2267-",
       [](Call& c) {
         c.start_after = absl::FromUnixSeconds(9'400'000'000);
         c.deadline = c.start_after + absl::Hours(1);
       }},
      {"the deadline (2262-04-12",
       [](Call& c) {
         c.start_after = absl::FromUnixNanos(std::numeric_limits<int64_t>::max()) - absl::Hours(1);
         c.deadline = c.start_after + absl::Hours(2);
       }},
      {"start_after (1668-",
       [](Call& c) {
         c.start_after = absl::FromUnixSeconds(-9'500'000'000);
         c.deadline = c.start_after + absl::Hours(1);
       }},
  };
  EXPECT_TRUE(ValidateCall(FullCall()).ok());
  for (const Case& tc : cases) {
    Call c = FullCall();
    tc.edit(c);
    const absl::Status s = ValidateCall(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << tc.expect;
    EXPECT_THAT(s.message(), HasSubstr(tc.expect));
    EXPECT_THAT(s.message(), HasSubstr(c.id.ToString())) << "names the call";
  }
  // Limits are the caller's to set.
  Call big = FullCall();
  big.args = Value::Bytes(std::string(2000, 'x'));
  EXPECT_TRUE(ValidateCall(big).ok());
  EXPECT_THAT(ValidateCall(big, {.max_args_bytes = 1000}).message(), HasSubstr("args are"));
  // Every call ValidateCall accepts at the edges of the stored times encodes as itself.
  for (const absl::Time start :
       {absl::FromUnixNanos(std::numeric_limits<int64_t>::min() + 1),
        absl::FromUnixNanos(std::numeric_limits<int64_t>::max() - 1) - absl::Hours(1)}) {
    Call edge = FullCall();
    edge.start_after = start;
    edge.deadline = start + absl::Hours(1);
    ASSERT_TRUE(ValidateCall(edge).ok()) << ValidateCall(edge);
    absl::StatusOr<Call> decoded = DecodeCall(EncodeCall(edge));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, edge);
  }
}

// A record keeps a keyed call's argument digest through its encoding; a record without one
// (written before digests) still decodes, with none.
TEST(CallRecordTest, TheArgumentDigestRoundTripsAndIsOptional) {
  Value args = Value::FromObject({{"name", Value::String("a")}, {"n", Value::Int64(3)}});
  CallRecord record{.state = CallState::kSucceeded,
                    .function = "counters:bump",
                    .result = Value::Int64(1),
                    .finished = absl::FromUnixSeconds(1'800'000'000),
                    .attempts = 2,
                    .args_digest = ArgsDigest(args)};
  absl::StatusOr<CallRecord> decoded = DecodeCallRecord(EncodeCallRecord(record));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, record);
  record.args_digest.clear();
  decoded = DecodeCallRecord(EncodeCallRecord(record));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->args_digest, "");
  // A digest field of another form (not this build's) is ignored, not a record that fails.
  for (const Value& odd : {Value::Int64(7), Value::Bytes(std::string(32, 'd'))}) {
    Value::Object with = DecodeBinary(EncodeCallRecord(record))->object();
    with.insert_or_assign("d", odd);
    absl::StatusOr<CallRecord> lenient = DecodeCallRecord(EncodeBinary(Value::FromObject(with)));
    ASSERT_TRUE(lenient.ok()) << lenient.status();
    EXPECT_EQ(*lenient, record);
  }
}

// A failed call's record keeps what its code threw (GetAppError), which reaches GetCall and
// `txfn call`; a record without it (older) decodes with none, and a malformed one is ignored.
TEST(CallRecordTest, AFailedCallsThrownErrorRoundTripsAndIsOptional) {
  const AppError thrown{
      .name = "RangeError",
      .message = "too far",
      .data = Value::FromObject({{"code", Value::String("FAR")}, {"by", Value::Int64(3)}})};
  CallRecord record{
      .state = CallState::kFailed,
      .function = "counters:throws",
      .error = WithAppError(absl::UnknownError("Uncaught RangeError: too far"), thrown),
      .finished = absl::FromUnixSeconds(1'800'000'000),
      .attempts = 1};
  absl::StatusOr<CallRecord> decoded = DecodeCallRecord(EncodeCallRecord(record));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, record);
  std::optional<AppError> back = GetAppError(decoded->error);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->name, "RangeError");
  EXPECT_EQ(back->data, thrown.data);
  EXPECT_EQ(decoded->error.message(), "Uncaught RangeError: too far");

  Value::Object without = DecodeBinary(EncodeCallRecord(record))->object();
  without.erase("e");
  decoded = DecodeCallRecord(EncodeBinary(Value::FromObject(without)));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(GetAppError(decoded->error).has_value());
  EXPECT_EQ(decoded->error.message(), "Uncaught RangeError: too far");
  for (const Value& odd : {Value::Int64(7), Value::FromObject({{"n", Value::Int64(1)}})}) {
    Value::Object with = without;
    with.insert_or_assign("e", odd);
    absl::StatusOr<CallRecord> lenient = DecodeCallRecord(EncodeBinary(Value::FromObject(with)));
    ASSERT_TRUE(lenient.ok()) << lenient.status();
    EXPECT_FALSE(GetAppError(lenient->error).has_value());
  }
}

// A dropped result's size round-trips; a record without it (older) or with a malformed one
// decodes as kept.
TEST(CallRecordTest, ADroppedResultsSizeRoundTripsAndIsOptional) {
  CallRecord record{.function = "big:result",
                    .result_dropped_bytes = 15'000'000,
                    .finished = absl::FromUnixSeconds(1'800'000'000),
                    .attempts = 1};
  absl::StatusOr<CallRecord> decoded = DecodeCallRecord(EncodeCallRecord(record));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, record);
  Value::Object fields = DecodeBinary(EncodeCallRecord(record))->object();
  for (const Value& odd : {Value::String("15"), Value::Int64(-3)}) {
    fields.insert_or_assign("x", odd);
    decoded = DecodeCallRecord(EncodeBinary(Value::FromObject(fields)));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->result_dropped_bytes, 0u);
  }
  record.result_dropped_bytes = 0;
  EXPECT_EQ(DecodeBinary(EncodeCallRecord(record))->object().count("x"), 0u) << "kept: no field";
}

// The digest is fixed: equal arguments give the same one whatever their key order was, other
// arguments another one; only keyed calls with their arguments at hand get one.
TEST(CallRecordTest, ArgsDigestIsStableAndKeyedOnly) {
  Value a = Value::FromObject({{"x", Value::Int64(1)}, {"y", Value::String("b")}});
  Value same = Value::FromObject({{"y", Value::String("b")}, {"x", Value::Int64(1)}});
  Value other = Value::FromObject({{"x", Value::Int64(2)}, {"y", Value::String("b")}});
  EXPECT_EQ(ArgsDigest(a).size(), 16u);
  EXPECT_EQ(ArgsDigest(a), ArgsDigest(same));
  EXPECT_NE(ArgsDigest(a), ArgsDigest(other));
  EXPECT_NE(ArgsDigest(Value::FromObject({})), ArgsDigest(Value::Null()));
  // Fixed forever: records written by one build are compared by the next.
  EXPECT_EQ(CallId::FromBytes(ArgsDigest(a))->ToString(), "cd297580-2136-80c2-942b-26804436ce1b");
  Call call{.args = a};
  EXPECT_EQ(KeyedArgsDigest(call), "") << "no idempotency key";
  call.idempotency_key = "k";
  EXPECT_EQ(KeyedArgsDigest(call), ArgsDigest(a));
  call.args = Value::Null();
  call.args_blob = "blob-1";
  EXPECT_EQ(KeyedArgsDigest(call), "") << "spilled and not loaded";
}

}  // namespace
}  // namespace txfn
