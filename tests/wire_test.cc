// txfn/wire.h: exact round trips, refusal of malformed input, and version skew.
#include "txfn/wire.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "absl/random/random.h"
#include "gtest/gtest.h"
#include "lib/wire/wire_proto.h"
#include "txfn/errors.h"

namespace txfn {
namespace {

namespace pb = wire_internal::pb;

std::string Bits(const Value& v) { return EncodeBinary(v); }

Value NaNWithPayload() {
  uint64_t bits = 0x7ff8000000abcdefULL;
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return Value::Float64(d);
}

Value EveryKind() {
  return Value::FromObject({
      {"array", Value::FromArray({Value::Null(), Value::Bool(true), Value::Bool(false),
                                  Value::FromArray({}), Value::FromObject({})})},
      {"bytes", Value::Bytes(std::string("\0\xff\x01", 3))},
      {"floats", Value::FromArray({Value::Float64(-0.0), Value::Float64(1.5e-310),
                                   Value::Float64(std::numeric_limits<double>::infinity()),
                                   NaNWithPayload()})},
      {"ints",
       Value::FromArray({Value::Int64(std::numeric_limits<int64_t>::min()),
                         Value::Int64(std::numeric_limits<int64_t>::max()), Value::Int64(-1)})},
      {"not_utf8", Value::String("\xc3\x28 caf\xc3\xa9")},
      {"nested", Value::FromObject({{"deeper", Value::FromObject({{"x", Value::Int64(1)}})}})},
  });
}

Value RandomValue(absl::BitGen& gen, int depth) {
  int kind = absl::Uniform(gen, 0, depth >= 6 ? 6 : 8);
  switch (kind) {
    case 0:
      return Value::Null();
    case 1:
      return Value::Int64(static_cast<int64_t>(absl::Uniform<uint64_t>(gen)));
    case 2: {
      uint64_t bits = absl::Uniform<uint64_t>(gen);
      double d;
      std::memcpy(&d, &bits, sizeof d);
      return Value::Float64(d);
    }
    case 3:
      return Value::Bool(absl::Bernoulli(gen, 0.5));
    case 4:
    case 5: {
      std::string s(absl::Uniform(gen, 0, 12), '\0');
      for (char& c : s) c = static_cast<char>(absl::Uniform(gen, 0, 256));
      return kind == 4 ? Value::String(std::move(s)) : Value::Bytes(std::move(s));
    }
    case 6: {
      Value::Array array;
      for (int i = absl::Uniform(gen, 0, 4); i > 0; --i) {
        array.push_back(RandomValue(gen, depth + 1));
      }
      return Value::FromArray(std::move(array));
    }
    default: {
      Value::Object object;
      for (int i = absl::Uniform(gen, 0, 4); i > 0; --i) {
        object.emplace(std::string(1, static_cast<char>('a' + absl::Uniform(gen, 0, 26))),
                       RandomValue(gen, depth + 1));
      }
      return Value::FromObject(std::move(object));
    }
  }
}

TEST(Wire, ValuesRoundTripBitForBit) {
  absl::StatusOr<Value> back = DecodeWireValue(EncodeWireValue(EveryKind()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Bits(*back), Bits(EveryKind()));
  absl::BitGen gen;
  for (int i = 0; i < 2000; ++i) {
    Value v = RandomValue(gen, 0);
    absl::StatusOr<Value> decoded = DecodeWireValue(EncodeWireValue(v));
    ASSERT_TRUE(decoded.ok()) << decoded.status() << " for " << v.DebugString();
    ASSERT_EQ(Bits(*decoded), Bits(v)) << v.DebugString();
  }
}

// EncodeWireValue writes without protobuf's message tree: byte for byte what protobuf
// serializes for the same pb::Value (so every reader of the proto reads it), empty names,
// empty strings and containers, zeros, -0.0, NaN payloads and every size of varint included.
TEST(Wire, ValuesAreWrittenAsProtobufWritesThem) {
  auto same = [](const Value& v) {
    pb::Value message;
    wire_internal::ToProto(v, &message);
    return EncodeWireValue(v) == message.SerializeAsString();
  };
  EXPECT_TRUE(same(EveryKind()));
  for (const Value& v :
       {Value::Null(), Value::Int64(0), Value::Int64(-1), Value::Int64(INT64_MIN),
        Value::Int64(INT64_MAX), Value::Float64(-0.0), Value::Bool(false), Value::String(""),
        Value::Bytes(""), Value::FromArray({}), Value::FromObject({}),
        Value::FromObject({{"", Value::FromArray({Value::FromObject({{"", Value::Null()}})})}}),
        Value::String(std::string(300, 'x')), Value::Bytes(std::string(70000, 'y'))}) {
    EXPECT_TRUE(same(v)) << v.DebugString();
  }
  absl::BitGen gen;
  for (int i = 0; i < 2000; ++i) {
    const Value v = RandomValue(gen, 0);
    ASSERT_TRUE(same(v)) << v.DebugString();
  }
  Value deep = Value::Int64(1);
  for (int i = 0; i < kMaxDecodeDepth; ++i) {
    deep = i % 2 == 0 ? Value::FromArray({deep, Value::String(std::string(200, 'z'))})
                      : Value::FromObject({{"k", deep}, {"", Value::Bool(true)}});
  }
  EXPECT_TRUE(same(deep));
}

TEST(Wire, RunRequestRoundTrips) {
  RemoteRunRequest request;
  request.tenant = "acme";
  request.run.function = "messages:send";
  request.run.args = EveryKind();
  request.run.kind = FunctionKind::kMutation;
  request.run.seed = 0xfeedfacecafebeefULL;
  request.run.deterministic_ids = true;
  request.run.now = 1'700'000'000'987'654'321ULL;
  request.run.limits.max_documents_read = 7;
  request.run.limits.document.max_nesting_depth = 3;
  request.snapshot_ts = 1'700'000'000'123'456'789ULL;
  request.metadata_version = 42;
  request.run.deadline = absl::FromUnixMicros(1'700'000'001'000'001);
  absl::StatusOr<RemoteRunRequest> back = DecodeRunRequest(EncodeRunRequest(request));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tenant, "acme");
  EXPECT_EQ(back->run.function, "messages:send");
  EXPECT_EQ(Bits(back->run.args), Bits(request.run.args));
  EXPECT_EQ(back->run.kind, FunctionKind::kMutation);
  EXPECT_EQ(back->run.seed, request.run.seed);
  EXPECT_TRUE(back->run.deterministic_ids);
  EXPECT_EQ(back->run.now, request.run.now);
  EXPECT_EQ(back->run.limits.max_documents_read, 7u);
  EXPECT_EQ(back->run.limits.max_bytes_read, TransactionLimits().max_bytes_read);
  EXPECT_EQ(back->run.limits.document.max_nesting_depth, 3);
  EXPECT_EQ(back->snapshot_ts, request.snapshot_ts);
  EXPECT_EQ(back->metadata_version, 42u);
  EXPECT_EQ(back->run.deadline, request.run.deadline);

  request.run.deadline = absl::InfiniteFuture();
  request.run.kind = FunctionKind::kAction;
  back = DecodeRunRequest(EncodeRunRequest(request));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->run.deadline, absl::InfiniteFuture());
  EXPECT_EQ(back->run.kind, FunctionKind::kAction);

  // The epoch would encode as 0, "none": it stays a deadline long passed.
  request.run.deadline = absl::UnixEpoch();
  back = DecodeRunRequest(EncodeRunRequest(request));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_LT(back->run.deadline, absl::UnixEpoch() + absl::Milliseconds(1));
}

TEST(Wire, RunResultRoundTripsWithStatusPayloads) {
  RunResult result;
  absl::Status status = absl::UnknownError("Uncaught Error: insufficient funds");
  status = WithAppError(status, AppError{"Error", "insufficient funds",
                                         Value::FromObject({{"code", Value::String("NO")}})});
  status = WithLogs(status, {{LogLevel::kWarn, "low balance"}});
  result.status = status;
  result.value = Value::Null();
  result.commit.tenant = "acme";
  result.commit.begin_ts = 99;
  result.commit.reads = {ReadRange{3, KeyRange::Point("k")}, ReadRange{4, KeyRange::All()}};
  result.commit.writes = {IndexWrite{3, "a", std::string("v\0w", 3)},
                          IndexWrite{3, "b", std::nullopt}};
  for (LogLevel level :
       {LogLevel::kDebug, LogLevel::kLog, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    result.logs.push_back({level, std::string(LogLevelName(level))});
  }
  result.stats.isolate_reused = true;
  result.stats.module_cache_hit = true;
  result.stats.context_hardened = true;
  result.stats.hardened_context_made = true;
  result.stats.modules_from_cache = 3;
  result.stats.modules_compiled = 1;
  result.stats.cpu_time = absl::Nanoseconds(123456789);

  absl::StatusOr<RunResult> back = DecodeRunResult(EncodeRunResult(result));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->status, status);
  std::optional<AppError> app = GetAppError(back->status);
  ASSERT_TRUE(app.has_value());
  EXPECT_EQ(app->message, "insufficient funds");
  EXPECT_EQ(FailedCallLogs(back->status).size(), 1u);
  EXPECT_EQ(back->commit, result.commit);
  EXPECT_EQ(back->logs, result.logs);
  EXPECT_TRUE(back->stats.isolate_reused);
  EXPECT_FALSE(back->stats.context_reused);
  EXPECT_TRUE(back->stats.context_hardened);
  EXPECT_TRUE(back->stats.hardened_context_made);
  EXPECT_TRUE(back->stats.module_cache_hit);
  EXPECT_EQ(back->stats.modules_from_cache, 3);
  EXPECT_EQ(back->stats.modules_compiled, 1);
  EXPECT_EQ(back->stats.cpu_time, absl::Nanoseconds(123456789));

  RunResult ok;
  ok.value = Value::Int64(5);
  back = DecodeRunResult(EncodeRunResult(ok));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->status.ok());
  EXPECT_EQ(back->value, Value::Int64(5));
}

// A Value as deep as the decoders take, of objects (three nested messages a level) and of
// arrays, round-trips inside a result: protobuf's default parse stopped at 100 messages.
TEST(Wire, ValuesNestedToTheLimitRoundTrip) {
  for (bool objects : {true, false}) {
    Value deep = Value::Int64(1);
    for (int i = 1; i < kMaxDecodeDepth; ++i) {  // kMaxDecodeDepth levels with the innermost
      deep = objects ? Value::FromObject({{"v", deep}}) : Value::FromArray({deep});
    }
    RunResult result;
    result.value = deep;
    result.commit.tenant = "acme";
    absl::StatusOr<RunResult> back = DecodeRunResult(EncodeRunResult(result));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->value, deep);
    EXPECT_EQ(back->commit.tenant, "acme");
    absl::StatusOr<Value> value = DecodeWireValue(EncodeWireValue(deep));
    ASSERT_TRUE(value.ok()) << value.status();
    EXPECT_EQ(*value, deep);
  }
}

// RunResult.value (and every Value a message carries) is declared bytes holding the Value
// message: the bytes of a writer that declared it as a Value message field are the same.
TEST(Wire, AValueWrittenAsAMessageFieldReadsAsItsBytes) {
  const Value value = Value::FromObject({{"a", Value::FromArray({Value::Int64(7)})}});
  pb::Value message;
  wire_internal::ToProto(value, &message);
  const std::string inner = message.SerializeAsString();
  ASSERT_LT(inner.size(), 128u);  // a one-byte length below
  // Field 4, length-delimited, as protoc writes a message field.
  std::string bytes = std::string(1, static_cast<char>((4 << 3) | 2)) +
                      std::string(1, static_cast<char>(inner.size())) + inner;
  absl::StatusOr<RunResult> back = DecodeRunResult(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->value, value);
  RunResult result;
  result.value = value;
  EXPECT_NE(EncodeRunResult(result).find(bytes), std::string::npos) << "written the same way";
}

// Protobuf's encoding by hand: a varint, a length-delimited field, a varint field.
std::string Varint(uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>((v & 0x7f) | 0x80));
  out.push_back(static_cast<char>(v));
  return out;
}
std::string Delimited(int field, std::string_view body) {
  return Varint((static_cast<uint64_t>(field) << 3) | 2) + Varint(body.size()) + std::string(body);
}
std::string VarintField(int field, uint64_t v) {
  return Varint(static_cast<uint64_t>(field) << 3) + Varint(v);
}

// pb::Value{array_value: n copies of `element` (a serialized pb::Value)}, built without
// protobuf's message tree.
std::string ArrayOf(size_t n, const std::string& element) {
  std::string values;
  const std::string one = Delimited(pb::Array::kValuesFieldNumber, element);
  values.reserve(one.size() * n);
  for (size_t i = 0; i < n; ++i) values += one;
  return Delimited(pb::Value::kArrayValueFieldNumber, values);
}

// Each value counts at least sizeof(Value), as FromJs counts a result: the array itself and
// its elements, up to kMaxWireValueMemory exactly, for one-byte strings (charged once) as for
// nulls.
TEST(Wire, ADecodedValuesMemoryIsBoundedAsAFunctionsResultIs) {
  const size_t nodes = kMaxWireValueMemory / sizeof(Value);
  const std::string null = Delimited(pb::Value::kNullValueFieldNumber, "");
  const std::string letter = Delimited(pb::Value::kStringValueFieldNumber, "x");
  for (const std::string& element : {null, letter}) {
    absl::StatusOr<Value> fits = DecodeWireValue(ArrayOf(nodes - 1, element));
    ASSERT_TRUE(fits.ok()) << fits.status();
    EXPECT_EQ(fits->array().size(), nodes - 1);
    absl::StatusOr<Value> over = DecodeWireValue(ArrayOf(nodes, element));
    EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument) << over.status();
    EXPECT_NE(std::string(over.status().message()).find("too large"), std::string::npos);
  }
  // 16 MiB of empty arrays, 4 bytes each: ~1 GB once, as protobuf's tree and then Values.
  const std::string empty_array = Delimited(pb::Value::kArrayValueFieldNumber, "");
  const std::string bytes = ArrayOf((size_t{16} << 20) / 4, empty_array);
  EXPECT_EQ(DecodeWireValue(bytes).status().code(), absl::StatusCode::kInvalidArgument);
  // The same bound holds inside a run request.
  pb::RunRequest request;
  request.set_args(bytes);
  EXPECT_EQ(DecodeRunRequest(request.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A string is charged as FromJs charges it, by its UTF-16 length: nulls up to the bound less
// a string of 2-byte characters (1 UTF-16 unit each) still decode, and would not if the
// string were charged its UTF-8 bytes. So does a scalar inside kMaxDecodeDepth containers,
// as in every other decoder (the wire allowed one level fewer).
TEST(Wire, StringsAreChargedAsFunctionsResultsAreAndDepthIsCountedInContainers) {
  constexpr size_t kChars = 1 << 20;
  std::string accents;
  for (size_t i = 0; i < kChars; ++i) accents += "\xc3\xa9";  // é
  const size_t string_charge = kChars + 1;
  // The object, the two names, the array: four values; the nulls fill the rest.
  const size_t nulls = (kMaxWireValueMemory - string_charge) / sizeof(Value) - 4;
  const std::string fields =
      Delimited(pb::Object::kFieldsFieldNumber,
                Delimited(pb::Field::kNameFieldNumber, "a") +
                    Delimited(pb::Field::kValueFieldNumber,
                              ArrayOf(nulls, Delimited(pb::Value::kNullValueFieldNumber, "")))) +
      Delimited(pb::Object::kFieldsFieldNumber,
                Delimited(pb::Field::kNameFieldNumber, "s") +
                    Delimited(pb::Field::kValueFieldNumber,
                              Delimited(pb::Value::kStringValueFieldNumber, accents)));
  absl::StatusOr<Value> v = DecodeWireValue(Delimited(pb::Value::kObjectValueFieldNumber, fields));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->object().at("s").string().size(), 2 * kChars);

  Value deep = Value::Int64(1);
  for (int i = 0; i < kMaxDecodeDepth; ++i) deep = Value::FromArray({deep});
  v = DecodeWireValue(EncodeWireValue(deep));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, deep);
  EXPECT_FALSE(DecodeWireValue(EncodeWireValue(Value::FromArray({deep}))).ok());
}

// A length or tag no protobuf writer makes: a length varint longer than its value needs, past
// 32 bits (ReadVarint32 took its low bits), and field number 0.
TEST(Wire, OverlongLengthsAndFieldZeroAreRefused) {
  // string_value, length 5 written in five bytes with bit 32 set: 85 80 80 80 10.
  const std::string overlong = Varint((pb::Value::kStringValueFieldNumber << 3) | 2) +
                               std::string("\x85\x80\x80\x80\x10", 5) + "hello";
  EXPECT_EQ(DecodeWireValue(overlong).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeWireValue(VarintField(0, 1) + VarintField(2, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// What any protobuf writer may write for one message reads as protobuf reads it: fields in
// any order, unknown fields (a newer writer's) skipped, a Field without a name named "".
// What only concatenated messages make (protobuf would keep the last or merge) is refused.
TEST(Wire, ReadsAnyWritersValueAndRefusesConcatenatedOnes) {
  const std::string unknown = VarintField(15, 1);
  const std::string null = Delimited(pb::Value::kNullValueFieldNumber, unknown);
  const std::string array =
      Delimited(pb::Value::kArrayValueFieldNumber,
                unknown + Delimited(pb::Array::kValuesFieldNumber, null) + unknown);
  const std::string field = Delimited(pb::Field::kValueFieldNumber, unknown + array) + unknown +
                            Delimited(pb::Field::kNameFieldNumber, "a");  // value first
  const std::string nameless =
      Delimited(pb::Field::kValueFieldNumber,
                VarintField(pb::Value::kInt64ValueFieldNumber, 6));  // zigzag: 3
  const std::string object =
      Delimited(pb::Value::kObjectValueFieldNumber,
                Delimited(pb::Object::kFieldsFieldNumber, nameless) + unknown +
                    Delimited(pb::Object::kFieldsFieldNumber, field));
  absl::StatusOr<Value> v = DecodeWireValue(unknown + object + unknown);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v,
            Value::FromObject({{"", Value::Int64(3)}, {"a", Value::FromArray({Value::Null()})}}));
  pb::Value parsed;  // protobuf reads the same bytes as the same value
  ASSERT_TRUE(parsed.ParseFromString(unknown + object + unknown));
  EXPECT_EQ(parsed.object_value().fields(1).value().array_value().values_size(), 1);

  const std::string one = VarintField(pb::Value::kInt64ValueFieldNumber, 2);
  const std::string two_names = Delimited(
      pb::Value::kObjectValueFieldNumber,
      Delimited(pb::Object::kFieldsFieldNumber, Delimited(pb::Field::kNameFieldNumber, "a") +
                                                    Delimited(pb::Field::kNameFieldNumber, "b") +
                                                    Delimited(pb::Field::kValueFieldNumber, one)));
  const std::string two_values = Delimited(
      pb::Value::kObjectValueFieldNumber,
      Delimited(pb::Object::kFieldsFieldNumber, Delimited(pb::Field::kValueFieldNumber, one) +
                                                    Delimited(pb::Field::kValueFieldNumber, one)));
  for (const auto& [bytes, message] :
       {std::pair{one + VarintField(pb::Value::kBoolValueFieldNumber, 1), "more than one kind"},
        std::pair{array + array, "more than one kind"}, std::pair{two_names, "two names"},
        std::pair{two_values, "two values"},
        std::pair{Delimited(pb::Value::kInt64ValueFieldNumber, "1"), "wrong wire type"},
        std::pair{VarintField(pb::Value::kStringValueFieldNumber, 1), "wrong wire type"},
        std::pair{Delimited(pb::Value::kArrayValueFieldNumber,
                            Delimited(pb::Array::kValuesFieldNumber, unknown)),
                  "no kind"}}) {
    v = DecodeWireValue(bytes);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << message;
    EXPECT_NE(std::string(v.status().message()).find(message), std::string::npos) << v.status();
  }
}

TEST(Wire, MalformedInputIsInvalidArgument) {
  for (std::string_view bytes : {std::string_view("\xff\xff\xff"), std::string_view("\x0a\x05")}) {
    EXPECT_EQ(DecodeWireValue(bytes).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(DecodeRunRequest(bytes).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(DecodeRunResult(bytes).status().code(), absl::StatusCode::kInvalidArgument);
  }
  // A message followed by a zero tag, or an end-group tag, and more: refused, not cut short.
  RunResult result;
  result.value = Value::Int64(1);
  result.commit.tenant = "acme";
  const std::string whole = EncodeRunResult(result);
  const std::string value = EncodeWireValue(Value::Int64(1));
  for (std::string_view stop : {std::string_view("\x00", 1), std::string_view("\x0c")}) {
    const std::string tail = std::string(stop) + "zz";
    EXPECT_EQ(DecodeWireValue(value + tail).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(DecodeRunResult(whole.substr(0, 4) + tail + whole.substr(4)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(Wire, RefusesValuesItCannotReadExactly) {
  pb::Value no_kind;
  no_kind.mutable_array_value()->add_values();  // an element of no kind: a newer writer's
  absl::StatusOr<Value> v = DecodeWireValue(no_kind.SerializeAsString());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(v.status().message().find("no kind"), std::string::npos) << v.status();

  for (const char* second : {"a", "0"}) {  // repeated, then out of order
    pb::Value object;
    pb::Field* a = object.mutable_object_value()->add_fields();
    a->set_name("a");
    a->mutable_value()->set_int64_value(1);
    pb::Field* b = object.mutable_object_value()->add_fields();
    b->set_name(second);
    b->mutable_value()->set_int64_value(2);
    v = DecodeWireValue(object.SerializeAsString());
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << second;
    EXPECT_NE(v.status().message().find("out of order or repeated"), std::string::npos);
  }

  pb::Value deep;
  pb::Value* at = &deep;
  for (int i = 0; i < kMaxDecodeDepth + 1; ++i) at = at->mutable_array_value()->add_values();
  at->set_int64_value(1);
  v = DecodeWireValue(deep.SerializeAsString());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << v.status();

  pb::RunResult bad_code;
  bad_code.mutable_status()->set_code(99);
  EXPECT_EQ(DecodeRunResult(bad_code.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  pb::RunResult bad_level;
  bad_level.add_logs()->set_level(static_cast<pb::LogLevel>(17));
  EXPECT_EQ(DecodeRunResult(bad_level.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
  pb::RunRequest bad_kind;
  bad_kind.set_kind(static_cast<pb::FunctionKind>(9));
  EXPECT_EQ(DecodeRunRequest(bad_kind.SerializeAsString()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// What a version-1 writer that knew only the first fields sends: no args, limits, deadline.
TEST(Wire, OlderMessagesReadWithTheDefaultsTheirWritersMeant) {
  pb::RunRequest old;
  old.set_wire_version(1);
  old.set_tenant("acme");
  old.set_function("m:f");
  old.set_snapshot_ts(5);
  absl::StatusOr<RemoteRunRequest> r = DecodeRunRequest(old.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->run.args.is_null());
  EXPECT_EQ(r->run.kind, FunctionKind::kQuery);
  EXPECT_EQ(r->run.deadline, absl::InfiniteFuture());
  EXPECT_EQ(r->run.limits.max_documents_read, TransactionLimits().max_documents_read);
  EXPECT_EQ(r->run.limits.document.max_nesting_depth, DocumentLimits().max_nesting_depth);

  pb::RunResult old_result;  // no status, no value: an OK null result
  absl::StatusOr<RunResult> result = DecodeRunResult(old_result.SerializeAsString());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.ok());
  EXPECT_TRUE(result->value.is_null());
}

TEST(Wire, NewerMessagesReadUnlessTheyNeedANewerReader) {
  pb::RunRequest newer;
  newer.set_wire_version(kWireVersion + 3);
  newer.set_min_reader_version(kWireVersion);
  newer.set_tenant("acme");
  std::string bytes = newer.SerializeAsString();
  bytes += std::string("\xa2\x06\x03xyz", 6);  // field 100 (bytes "xyz"): unknown to us
  absl::StatusOr<RemoteRunRequest> r = DecodeRunRequest(bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tenant, "acme");

  newer.set_min_reader_version(kWireVersion + 1);
  r = DecodeRunRequest(newer.SerializeAsString());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("needs a reader of version 2"), std::string::npos)
      << r.status();

  pb::RunResult newer_result;
  newer_result.set_min_reader_version(kWireVersion + 1);
  EXPECT_EQ(DecodeRunResult(newer_result.SerializeAsString()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace txfn
