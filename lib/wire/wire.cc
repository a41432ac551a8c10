#include "txfn/wire.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "lib/wire/wire_proto.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace wire_internal {
namespace {

using internal::StrCat;

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(StrCat("wire: malformed ", what));
}

template <typename Message>
absl::Status Parse(std::string_view bytes, std::string_view what, Message* out) {
  google::protobuf::io::CodedInputStream input(reinterpret_cast<const uint8_t*>(bytes.data()),
                                               static_cast<int>(bytes.size()));
  input.SetRecursionLimit(kProtoRecursionLimit);
  // ParseFromCodedStream stops, content, at a zero or end-group tag: what follows would be
  // dropped unseen (ParseFromArray refused it).
  if (!out->ParseFromCodedStream(&input) || !input.ConsumedEntireMessage()) {
    return Malformed(what);
  }
  return absl::OkStatus();
}

// The version check every top-level message goes through.
absl::Status CheckVersion(uint32_t min_reader_version, std::string_view what) {
  if (min_reader_version > kWireVersion) {
    return absl::FailedPreconditionError(StrCat("wire: ", what, " needs a reader of version ",
                                                min_reader_version, " or later; this is version ",
                                                kWireVersion));
  }
  return absl::OkStatus();
}

// Reads a serialized pb::Value straight into a Value. protobuf's own parse would first build
// its message tree, ~100 bytes per element: 16 MiB of empty arrays (4 bytes each on the wire)
// took ~1 GB before anything could look at it. This reader charges each value the memory it
// takes (as FromJs does: at least sizeof(Value), a string its UTF-16 length plus one, bytes
// their length) against kMaxWireValueMemory as it goes.
//
// It reads what any protobuf writer makes of one pb::Value (fields in any order, unknown
// fields skipped) and refuses what only a concatenation of messages makes (a Value of two
// kinds, a Field with two names or two values, which protobuf would overwrite or merge), and
// a known field of another wire type (protobuf would keep it as an unknown field).
class ValueReader {
 public:
  explicit ValueReader(std::string_view bytes)
      : input_(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size())) {
    input_.PushLimit(static_cast<int>(bytes.size()));
  }

  absl::StatusOr<Value> ReadAll() { return ReadValueFields(1); }

 private:
  using WireFormat = google::protobuf::internal::WireFormatLite;

  static absl::Status NoKind() {
    return absl::InvalidArgumentError(
        "wire: a Value of no kind this reader knows (from a newer writer?)");
  }

  absl::Status Charge(size_t bytes) {
    memory_ += std::max(bytes, sizeof(Value));
    if (memory_ > kMaxWireValueMemory) {
      return absl::InvalidArgumentError(
          StrCat("wire: Value too large: it would take more than ", kMaxWireValueMemory,
                 " bytes of memory as a txfn Value (too many elements)"));
    }
    return absl::OkStatus();
  }

  // The next tag of the message whose limit is pushed; 0 at its end.
  absl::StatusOr<uint32_t> NextTag(std::string_view what) {
    if (input_.BytesUntilLimit() == 0) return 0;
    const uint32_t tag = input_.ReadTag();
    // A zero tag or a truncated one (0), or field number 0, which no writer uses.
    if (WireFormat::GetTagFieldNumber(tag) == 0) return Malformed(what);
    return tag;
  }

  // A length-delimited field's length, within what is left of the message. (ReadVarint32
  // would take the low bits of a longer varint: 85 80 80 80 10 read as 5.)
  absl::StatusOr<int> ReadLength(std::string_view what) {
    uint64_t length = 0;
    if (!input_.ReadVarint64(&length) ||
        length > static_cast<uint64_t>(std::max(input_.BytesUntilLimit(), 0))) {
      return Malformed(what);
    }
    return static_cast<int>(length);
  }

  // Enters a length-delimited field: its length read and pushed as the limit.
  absl::StatusOr<google::protobuf::io::CodedInputStream::Limit> Enter(std::string_view what) {
    TXFN_ASSIGN_OR_RETURN(const int length, ReadLength(what));
    return input_.PushLimit(length);
  }

  absl::Status Skip(uint32_t tag, std::string_view what) {
    if (!WireFormat::SkipField(&input_, tag)) return Malformed(what);
    return absl::OkStatus();
  }

  static bool Is(uint32_t tag, int field, WireFormat::WireType type) {
    return tag == WireFormat::MakeTag(field, type);
  }

  absl::StatusOr<std::string> ReadBytes(std::string_view what) {
    TXFN_ASSIGN_OR_RETURN(const int length, ReadLength(what));
    std::string out;
    if (!input_.ReadString(&out, length)) return Malformed(what);
    return out;
  }

  // What FromJs charges a string: its length in UTF-16 units (as V8 holds it) plus one, for
  // the UTF-8 `text` it became. Charged by its UTF-8 size, a string of CJK characters (3 bytes,
  // 1 unit each) a function returned could be refused here.
  static size_t JsCharge(std::string_view text) {
    size_t units = 1;
    for (const char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      if ((byte & 0xc0) != 0x80) ++units;  // a character starts (not a continuation byte)
      if (byte >= 0xf0) ++units;           // a 4-byte character is a surrogate pair
    }
    return units;
  }

  // As every other decoder: kMaxDecodeDepth arrays or objects nested, a scalar inside them.
  static absl::Status CheckDepth(int depth) {
    if (depth > kMaxDecodeDepth) {
      return absl::InvalidArgumentError(
          StrCat("wire: Value nested deeper than ", kMaxDecodeDepth, " levels"));
    }
    return absl::OkStatus();
  }

  // The fields of a Value message, up to the current limit.
  absl::StatusOr<Value> ReadValueFields(int depth) {
    std::optional<Value> out;
    while (true) {
      TXFN_ASSIGN_OR_RETURN(const uint32_t tag, NextTag("Value"));
      if (tag == 0) break;
      const int field = WireFormat::GetTagFieldNumber(tag);
      if (field < pb::Value::kNullValueFieldNumber || field > pb::Value::kObjectValueFieldNumber) {
        TXFN_RETURN_IF_ERROR(Skip(tag, "Value"));  // a newer writer's field
        continue;
      }
      if (out.has_value()) {
        return absl::InvalidArgumentError("wire: a Value with more than one kind");
      }
      TXFN_ASSIGN_OR_RETURN(out, ReadKind(tag, depth));
    }
    if (!out.has_value()) return NoKind();
    return *std::move(out);
  }

  absl::StatusOr<Value> ReadKind(uint32_t tag, int depth) {
    const int field = WireFormat::GetTagFieldNumber(tag);
    const bool string =
        field == pb::Value::kStringValueFieldNumber || field == pb::Value::kBytesValueFieldNumber;
    if (!string) TXFN_RETURN_IF_ERROR(Charge(0));  // a string is charged once, with its data
    uint64_t bits = 0;
    if (Is(tag, pb::Value::kInt64ValueFieldNumber, WireFormat::WIRETYPE_VARINT) &&
        input_.ReadVarint64(&bits)) {
      return Value::Int64(WireFormat::ZigZagDecode64(bits));
    }
    if (Is(tag, pb::Value::kFloat64ValueFieldNumber, WireFormat::WIRETYPE_FIXED64) &&
        input_.ReadLittleEndian64(&bits)) {
      return Value::Float64(WireFormat::DecodeDouble(bits));
    }
    if (Is(tag, pb::Value::kBoolValueFieldNumber, WireFormat::WIRETYPE_VARINT) &&
        input_.ReadVarint64(&bits)) {
      return Value::Bool(bits != 0);
    }
    const bool delimited = WireFormat::GetTagWireType(tag) == WireFormat::WIRETYPE_LENGTH_DELIMITED;
    switch (delimited ? field : 0) {
      case pb::Value::kNullValueFieldNumber: {
        TXFN_ASSIGN_OR_RETURN(auto limit, Enter("Null"));
        TXFN_RETURN_IF_ERROR(SkipAll("Null"));
        input_.PopLimit(limit);
        return Value::Null();
      }
      case pb::Value::kStringValueFieldNumber:
      case pb::Value::kBytesValueFieldNumber: {
        const bool text = field == pb::Value::kStringValueFieldNumber;
        TXFN_ASSIGN_OR_RETURN(std::string data, ReadBytes(text ? "string" : "bytes"));
        TXFN_RETURN_IF_ERROR(Charge(text ? JsCharge(data) : data.size()));
        return text ? Value::String(std::move(data)) : Value::Bytes(std::move(data));
      }
      case pb::Value::kArrayValueFieldNumber:
        return ReadArray(depth);
      case pb::Value::kObjectValueFieldNumber:
        return ReadObject(depth);
    }
    return Malformed("Value (a kind of the wrong wire type, or cut short)");
  }

  absl::Status SkipAll(std::string_view what) {
    while (true) {
      TXFN_ASSIGN_OR_RETURN(const uint32_t tag, NextTag(what));
      if (tag == 0) return absl::OkStatus();
      TXFN_RETURN_IF_ERROR(Skip(tag, what));
    }
  }

  // A Value message in a length-delimited field.
  absl::StatusOr<Value> ReadNestedValue(int depth) {
    TXFN_ASSIGN_OR_RETURN(auto limit, Enter("Value"));
    TXFN_ASSIGN_OR_RETURN(Value v, ReadValueFields(depth));
    input_.PopLimit(limit);
    return v;
  }

  // Enters an Array or Object at `depth` and calls `each` at each element (its repeated
  // field 1, length-delimited; other fields are skipped).
  template <typename Each>
  absl::Status ForEachElement(std::string_view what, int depth, Each each) {
    static_assert(pb::Array::kValuesFieldNumber == 1 && pb::Object::kFieldsFieldNumber == 1);
    TXFN_RETURN_IF_ERROR(CheckDepth(depth));
    TXFN_ASSIGN_OR_RETURN(auto limit, Enter(what));
    while (true) {
      TXFN_ASSIGN_OR_RETURN(const uint32_t tag, NextTag(what));
      if (tag == 0) break;
      if (Is(tag, 1, WireFormat::WIRETYPE_LENGTH_DELIMITED)) {
        TXFN_RETURN_IF_ERROR(each());
      } else {
        TXFN_RETURN_IF_ERROR(Skip(tag, what));
      }
    }
    input_.PopLimit(limit);
    return absl::OkStatus();
  }

  absl::StatusOr<Value> ReadArray(int depth) {
    Value::Array array;
    TXFN_RETURN_IF_ERROR(ForEachElement("Array", depth, [&]() -> absl::Status {
      TXFN_ASSIGN_OR_RETURN(Value element, ReadNestedValue(depth + 1));
      array.push_back(std::move(element));
      return absl::OkStatus();
    }));
    return Value::FromArray(std::move(array));
  }

  absl::StatusOr<Value> ReadObject(int depth) {
    Value::Object object;
    TXFN_RETURN_IF_ERROR(ForEachElement("Object", depth, [&]() -> absl::Status {
      TXFN_ASSIGN_OR_RETURN(auto field_limit, Enter("Field"));
      std::optional<std::string> name;
      std::optional<Value> value;
      while (true) {
        TXFN_ASSIGN_OR_RETURN(const uint32_t tag, NextTag("Field"));
        if (tag == 0) break;
        if (Is(tag, pb::Field::kNameFieldNumber, WireFormat::WIRETYPE_LENGTH_DELIMITED)) {
          if (name.has_value()) return absl::InvalidArgumentError("wire: a Field with two names");
          TXFN_ASSIGN_OR_RETURN(name, ReadBytes("Field name"));
          TXFN_RETURN_IF_ERROR(Charge(JsCharge(*name)));
        } else if (Is(tag, pb::Field::kValueFieldNumber, WireFormat::WIRETYPE_LENGTH_DELIMITED)) {
          if (value.has_value()) {
            return absl::InvalidArgumentError("wire: a Field with two values");
          }
          TXFN_ASSIGN_OR_RETURN(value, ReadNestedValue(depth + 1));
        } else {
          TXFN_RETURN_IF_ERROR(Skip(tag, "Field"));
        }
      }
      input_.PopLimit(field_limit);
      if (!value.has_value()) return NoKind();  // protobuf's default Value has none
      if (!name.has_value()) name.emplace();    // proto3: an absent name is ""
      if (!object.empty() && !(object.rbegin()->first < *name)) {
        return absl::InvalidArgumentError(
            StrCat("wire: object field '", *name, "' is out of order or repeated"));
      }
      object.emplace_hint(object.end(), *std::move(name), *std::move(value));
      return absl::OkStatus();
    }));
    return Value::FromObject(std::move(object));
  }

  google::protobuf::io::CodedInputStream input_;
  size_t memory_ = 0;
};

// Writes a Value as protobuf would serialize its pb::Value, byte for byte, without building
// protobuf's message tree (~100 bytes per element, for a result of millions of them). Two
// walks: the first measures each array, object and field message (post-order, kept in
// pre-order), the second writes, each length taken from the first.
class ValueWriter {
 public:
  std::string Write(const Value& value) {
    const size_t size = Measure(value);
    std::string out;
    out.reserve(size);
    next_ = 0;
    WriteValue(value, out);
    return out;
  }

 private:
  using WireFormat = google::protobuf::internal::WireFormatLite;
  using Output = google::protobuf::io::CodedOutputStream;
  static constexpr size_t kTagBytes = 1;  // every field number here is below 16

  static size_t Delimited(size_t body) { return kTagBytes + Output::VarintSize64(body) + body; }

  // The size of a scalar `v`'s Value message.
  static size_t ScalarSize(const Value& v) {
    switch (v.type()) {
      case ValueType::kInt64:
        return kTagBytes + Output::VarintSize64(WireFormat::ZigZagEncode64(v.int64()));
      case ValueType::kFloat64:
        return kTagBytes + 8;
      case ValueType::kBool:
        return kTagBytes + 1;
      case ValueType::kString:
        return Delimited(v.string().size());
      case ValueType::kBytes:
        return Delimited(v.bytes().size());
      default:  // null (an empty Null message)
        return Delimited(0);
    }
  }

  // The size of `v`'s Value message; an array's, object's and field's bodies are kept.
  size_t Measure(const Value& v) {
    switch (v.type()) {
      case ValueType::kArray: {
        const size_t slot = Reserve();
        size_t body = 0;
        for (const Value& element : v.array()) body += Delimited(Measure(element));
        sizes_[slot] = body;
        return Delimited(body);
      }
      case ValueType::kObject: {
        const size_t slot = Reserve();
        size_t body = 0;
        for (const auto& [name, value] : v.object()) {
          const size_t field_slot = Reserve();
          // proto3 leaves out an empty name (its default).
          const size_t field =
              (name.empty() ? 0 : Delimited(name.size())) + Delimited(Measure(value));
          sizes_[field_slot] = field;
          body += Delimited(field);
        }
        sizes_[slot] = body;
        return Delimited(body);
      }
      default:
        return ScalarSize(v);
    }
  }

  size_t Reserve() {
    sizes_.push_back(0);
    return sizes_.size() - 1;
  }

  static void PutVarint(uint64_t v, std::string& out) {
    uint8_t bytes[10];
    out.append(reinterpret_cast<const char*>(bytes),
               Output::WriteVarint64ToArray(v, bytes) - bytes);
  }
  static void PutTag(int field, WireFormat::WireType type, std::string& out) {
    out.push_back(static_cast<char>(WireFormat::MakeTag(field, type)));
  }
  static void PutDelimited(int field, size_t length, std::string& out) {
    PutTag(field, WireFormat::WIRETYPE_LENGTH_DELIMITED, out);
    PutVarint(length, out);
  }

  void WriteValue(const Value& v, std::string& out) {
    switch (v.type()) {
      case ValueType::kNull:
        PutDelimited(pb::Value::kNullValueFieldNumber, 0, out);
        return;
      case ValueType::kInt64:
        PutTag(pb::Value::kInt64ValueFieldNumber, WireFormat::WIRETYPE_VARINT, out);
        PutVarint(WireFormat::ZigZagEncode64(v.int64()), out);
        return;
      case ValueType::kFloat64: {
        PutTag(pb::Value::kFloat64ValueFieldNumber, WireFormat::WIRETYPE_FIXED64, out);
        uint8_t bytes[8];
        Output::WriteLittleEndian64ToArray(WireFormat::EncodeDouble(v.float64()), bytes);
        out.append(reinterpret_cast<const char*>(bytes), sizeof(bytes));
        return;
      }
      case ValueType::kBool:
        PutTag(pb::Value::kBoolValueFieldNumber, WireFormat::WIRETYPE_VARINT, out);
        out.push_back(v.boolean() ? 1 : 0);
        return;
      case ValueType::kString:
        PutDelimited(pb::Value::kStringValueFieldNumber, v.string().size(), out);
        out += v.string();
        return;
      case ValueType::kBytes:
        PutDelimited(pb::Value::kBytesValueFieldNumber, v.bytes().size(), out);
        out += v.bytes();
        return;
      case ValueType::kArray:
        PutDelimited(pb::Value::kArrayValueFieldNumber, sizes_[next_++], out);
        for (const Value& element : v.array()) {
          PutDelimited(pb::Array::kValuesFieldNumber, MeasuredSize(element), out);
          WriteValue(element, out);
        }
        return;
      case ValueType::kObject:
        PutDelimited(pb::Value::kObjectValueFieldNumber, sizes_[next_++], out);
        for (const auto& [name, value] : v.object()) {
          PutDelimited(pb::Object::kFieldsFieldNumber, sizes_[next_++], out);
          if (!name.empty()) {
            PutDelimited(pb::Field::kNameFieldNumber, name.size(), out);
            out += name;
          }
          PutDelimited(pb::Field::kValueFieldNumber, MeasuredSize(value), out);
          WriteValue(value, out);
        }
        return;
    }
  }

  // The size of `v`'s Value message during the write: a container's from the first walk (the
  // next slot, which WriteValue then takes), a scalar's computed again.
  size_t MeasuredSize(const Value& v) const {
    return v.is_array() || v.is_object() ? Delimited(sizes_[next_]) : ScalarSize(v);
  }

  std::vector<size_t> sizes_;  // array, object and field message bodies, in pre-order
  size_t next_ = 0;            // the next of sizes_ the write takes
};

}  // namespace

// Wire log levels: 0 is LOG (console.log, the common case and an old writer's default).
pb::LogLevel LevelToProto(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return pb::LOG_LEVEL_DEBUG;
    case LogLevel::kLog:
      return pb::LOG_LEVEL_LOG;
    case LogLevel::kInfo:
      return pb::LOG_LEVEL_INFO;
    case LogLevel::kWarn:
      return pb::LOG_LEVEL_WARN;
    case LogLevel::kError:
      return pb::LOG_LEVEL_ERROR;
  }
  return pb::LOG_LEVEL_LOG;
}

absl::StatusOr<LogLevel> LevelFromProto(int level) {
  switch (level) {
    case pb::LOG_LEVEL_DEBUG:
      return LogLevel::kDebug;
    case pb::LOG_LEVEL_LOG:
      return LogLevel::kLog;
    case pb::LOG_LEVEL_INFO:
      return LogLevel::kInfo;
    case pb::LOG_LEVEL_WARN:
      return LogLevel::kWarn;
    case pb::LOG_LEVEL_ERROR:
      return LogLevel::kError;
    default:
      return absl::InvalidArgumentError(StrCat("wire: unknown log level ", level));
  }
}

void ToProto(const Value& in, pb::Value* out) {
  switch (in.type()) {
    case ValueType::kNull:
      out->mutable_null_value();
      return;
    case ValueType::kInt64:
      out->set_int64_value(in.int64());
      return;
    case ValueType::kFloat64:
      out->set_float64_value(in.float64());
      return;
    case ValueType::kBool:
      out->set_bool_value(in.boolean());
      return;
    case ValueType::kString:
      out->set_string_value(in.string());
      return;
    case ValueType::kBytes:
      out->set_bytes_value(in.bytes());
      return;
    case ValueType::kArray: {
      pb::Array* array = out->mutable_array_value();
      array->mutable_values()->Reserve(static_cast<int>(in.array().size()));
      for (const Value& element : in.array()) ToProto(element, array->add_values());
      return;
    }
    case ValueType::kObject: {
      pb::Object* object = out->mutable_object_value();
      for (const auto& [name, value] : in.object()) {
        pb::Field* field = object->add_fields();
        field->set_name(name);
        ToProto(value, field->mutable_value());
      }
      return;
    }
  }
}

void ToProtoBytes(const Value& in, std::string* out) { *out = EncodeWireValue(in); }

absl::StatusOr<Value> FromProtoBytes(std::string_view bytes, const Value& absent) {
  if (bytes.empty()) return absent;
  return DecodeWireValue(bytes);
}

void ToProto(const absl::Status& in, pb::Status* out) {
  out->set_code(static_cast<int32_t>(in.code()));
  out->set_message(std::string(in.message()));
  in.ForEachPayload([out](absl::string_view type_url, const absl::Cord& value) {
    pb::Payload* payload = out->add_payloads();
    payload->set_type_url(std::string(type_url));
    payload->set_value(std::string(value));
  });
}

absl::Status FromProto(const pb::Status& in, absl::Status* out) {
  if (in.code() == 0) {
    *out = absl::OkStatus();
    return absl::OkStatus();
  }
  if (in.code() < 0 || in.code() > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(StrCat("wire: unknown status code ", in.code()));
  }
  *out = absl::Status(static_cast<absl::StatusCode>(in.code()), in.message());
  for (const pb::Payload& payload : in.payloads()) {
    out->SetPayload(payload.type_url(), absl::Cord(payload.value()));
  }
  return absl::OkStatus();
}

void ToProto(const PreparedCommit& in, pb::PreparedCommit* out) {
  out->set_tenant(in.tenant);
  out->set_begin_ts(in.begin_ts);
  for (const ReadRange& read : in.reads) {
    pb::ReadRange* r = out->add_reads();
    r->set_index(read.index);
    r->mutable_range()->set_start(read.range.start);
    if (read.range.end) r->mutable_range()->set_end(*read.range.end);
  }
  for (const IndexWrite& write : in.writes) {
    pb::IndexWrite* w = out->add_writes();
    w->set_index(write.index);
    w->set_key(write.key);
    if (write.value) w->set_value(*write.value);
  }
}

PreparedCommit FromProto(const pb::PreparedCommit& in) {
  PreparedCommit out;
  out.tenant = in.tenant();
  out.begin_ts = in.begin_ts();
  out.reads.reserve(in.reads_size());
  for (const pb::ReadRange& read : in.reads()) {
    KeyRange range{read.range().start(), std::nullopt};
    if (read.range().has_end()) range.end = read.range().end();
    out.reads.push_back(ReadRange{read.index(), std::move(range)});
  }
  out.writes.reserve(in.writes_size());
  for (const pb::IndexWrite& write : in.writes()) {
    IndexWrite w{write.index(), write.key(), std::nullopt};
    if (write.has_value()) w.value = write.value();
    out.writes.push_back(std::move(w));
  }
  return out;
}

namespace {

absl::StatusOr<FunctionKind> KindFromProto(int kind) {
  switch (kind) {
    case pb::FUNCTION_KIND_QUERY:
      return FunctionKind::kQuery;
    case pb::FUNCTION_KIND_MUTATION:
      return FunctionKind::kMutation;
    case pb::FUNCTION_KIND_ACTION:
      return FunctionKind::kAction;
    default:
      return absl::InvalidArgumentError(StrCat("wire: unknown function kind ", kind));
  }
}

pb::FunctionKind KindToProto(FunctionKind kind) {
  switch (kind) {
    case FunctionKind::kQuery:
      return pb::FUNCTION_KIND_QUERY;
    case FunctionKind::kMutation:
      return pb::FUNCTION_KIND_MUTATION;
    case FunctionKind::kAction:
      return pb::FUNCTION_KIND_ACTION;
  }
  return pb::FUNCTION_KIND_QUERY;
}

void LimitsToProto(const TransactionLimits& in, pb::TransactionLimits* out) {
  out->set_max_documents_read(in.max_documents_read);
  out->set_max_bytes_read(in.max_bytes_read);
  out->set_max_documents_written(in.max_documents_written);
  out->set_max_bytes_written(in.max_bytes_written);
  out->set_max_read_ranges(in.max_read_ranges);
  pb::DocumentLimits* doc = out->mutable_document();
  doc->set_max_size_bytes(in.document.max_size_bytes);
  doc->set_max_nesting_depth(static_cast<uint32_t>(in.document.max_nesting_depth));
  doc->set_max_fields_per_object(in.document.max_fields_per_object);
  doc->set_max_array_length(in.document.max_array_length);
  doc->set_max_field_name_bytes(in.document.max_field_name_bytes);
}

// `value` if set, else `fallback`: 0 on the wire is "the default" (an old writer's meaning).
template <typename T, typename U>
void SetOrKeep(T value, U* field) {
  if (value != 0) *field = static_cast<U>(value);
}

TransactionLimits LimitsFromProto(const pb::TransactionLimits& in) {
  TransactionLimits out;
  SetOrKeep(in.max_documents_read(), &out.max_documents_read);
  SetOrKeep(in.max_bytes_read(), &out.max_bytes_read);
  SetOrKeep(in.max_documents_written(), &out.max_documents_written);
  SetOrKeep(in.max_bytes_written(), &out.max_bytes_written);
  SetOrKeep(in.max_read_ranges(), &out.max_read_ranges);
  const pb::DocumentLimits& doc = in.document();
  SetOrKeep(doc.max_size_bytes(), &out.document.max_size_bytes);
  SetOrKeep(doc.max_nesting_depth(), &out.document.max_nesting_depth);
  SetOrKeep(doc.max_fields_per_object(), &out.document.max_fields_per_object);
  SetOrKeep(doc.max_array_length(), &out.document.max_array_length);
  SetOrKeep(doc.max_field_name_bytes(), &out.document.max_field_name_bytes);
  return out;
}

}  // namespace

namespace {
// 0 on the wire is "no deadline", so the one instant that encodes as 0 (the epoch, long
// passed) goes as a microsecond earlier.
int64_t DeadlineToProto(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return 0;
  const int64_t micros = absl::ToUnixMicros(deadline);
  return micros == 0 ? -1 : micros;
}
}  // namespace

void ToProto(const RemoteRunRequest& in, pb::RunRequest* out) {
  out->set_wire_version(kWireVersion);
  out->set_min_reader_version(1);
  out->set_tenant(in.tenant);
  out->set_function(in.run.function);
  ToProtoBytes(in.run.args, out->mutable_args());
  out->set_kind(KindToProto(in.run.kind));
  out->set_snapshot_ts(in.snapshot_ts);
  out->set_metadata_version(in.metadata_version);
  out->set_deadline_unix_micros(DeadlineToProto(in.run.deadline));
  out->set_seed(in.run.seed);
  out->set_deterministic_ids(in.run.deterministic_ids);
  out->set_now_unix_nanos(in.run.now);
  LimitsToProto(in.run.limits, out->mutable_limits());
}

absl::StatusOr<RemoteRunRequest> FromProto(const pb::RunRequest& in) {
  TXFN_RETURN_IF_ERROR(CheckVersion(in.min_reader_version(), "run request"));
  RemoteRunRequest out;
  out.tenant = in.tenant();
  out.run.function = in.function();
  TXFN_ASSIGN_OR_RETURN(out.run.args, FromProtoBytes(in.args(), Value::Null()));
  TXFN_ASSIGN_OR_RETURN(out.run.kind, KindFromProto(in.kind()));
  out.snapshot_ts = in.snapshot_ts();
  out.metadata_version = in.metadata_version();
  out.run.deadline = in.deadline_unix_micros() == 0
                         ? absl::InfiniteFuture()
                         : absl::FromUnixMicros(in.deadline_unix_micros());
  out.run.seed = in.seed();
  out.run.deterministic_ids = in.deterministic_ids();
  out.run.now = in.now_unix_nanos();
  out.run.limits = LimitsFromProto(in.limits());
  return out;
}

void ToProto(const RunResult& in, pb::RunResult* out) {
  out->set_wire_version(kWireVersion);
  out->set_min_reader_version(1);
  if (!in.status.ok()) ToProto(in.status, out->mutable_status());
  ToProtoBytes(in.value, out->mutable_value());
  ToProto(in.commit, out->mutable_commit());
  for (const LogEntry& log : in.logs) {
    pb::LogEntry* entry = out->add_logs();
    entry->set_level(LevelToProto(log.level));
    entry->set_message(log.message);
  }
  pb::RunStats* stats = out->mutable_stats();
  stats->set_isolate_reused(in.stats.isolate_reused);
  stats->set_context_reused(in.stats.context_reused);
  stats->set_context_hardened(in.stats.context_hardened);
  stats->set_hardened_context_made(in.stats.hardened_context_made);
  stats->set_module_cache_hit(in.stats.module_cache_hit);
  stats->set_modules_compiled(static_cast<uint32_t>(in.stats.modules_compiled));
  stats->set_modules_from_cache(static_cast<uint32_t>(in.stats.modules_from_cache));
  stats->set_cpu_time_nanos(absl::ToInt64Nanoseconds(in.stats.cpu_time));
}

absl::StatusOr<RunResult> FromProto(const pb::RunResult& in) {
  TXFN_RETURN_IF_ERROR(CheckVersion(in.min_reader_version(), "run result"));
  RunResult out;
  if (in.has_status()) TXFN_RETURN_IF_ERROR(FromProto(in.status(), &out.status));
  TXFN_ASSIGN_OR_RETURN(out.value, FromProtoBytes(in.value(), Value::Null()));
  out.commit = FromProto(in.commit());
  out.logs.reserve(in.logs_size());
  for (const pb::LogEntry& entry : in.logs()) {
    TXFN_ASSIGN_OR_RETURN(LogLevel level, LevelFromProto(entry.level()));
    out.logs.push_back(LogEntry{level, entry.message()});
  }
  const pb::RunStats& stats = in.stats();
  out.stats.isolate_reused = stats.isolate_reused();
  out.stats.context_reused = stats.context_reused();
  out.stats.context_hardened = stats.context_hardened();
  out.stats.hardened_context_made = stats.hardened_context_made();
  out.stats.module_cache_hit = stats.module_cache_hit();
  out.stats.modules_compiled = static_cast<int>(stats.modules_compiled());
  out.stats.modules_from_cache = static_cast<int>(stats.modules_from_cache());
  out.stats.cpu_time = absl::Nanoseconds(stats.cpu_time_nanos());
  return out;
}

template <typename Message, typename T>
std::string Encode(const T& in) {
  Message message;
  ToProto(in, &message);
  return message.SerializeAsString();
}

template <typename Message>
auto Decode(std::string_view bytes, std::string_view what) -> decltype(FromProto(Message())) {
  Message message;
  TXFN_RETURN_IF_ERROR(Parse(bytes, what, &message));
  return FromProto(message);
}

}  // namespace wire_internal

std::string EncodeWireValue(const Value& value) {
  return wire_internal::ValueWriter().Write(value);
}
absl::StatusOr<Value> DecodeWireValue(std::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return wire_internal::Malformed("Value (over 2 GiB)");
  }
  return wire_internal::ValueReader(bytes).ReadAll();
}
std::string EncodeRunRequest(const RemoteRunRequest& request) {
  return wire_internal::Encode<wire_internal::pb::RunRequest>(request);
}
absl::StatusOr<RemoteRunRequest> DecodeRunRequest(std::string_view bytes) {
  return wire_internal::Decode<wire_internal::pb::RunRequest>(bytes, "run request");
}
std::string EncodeRunResult(const RunResult& result) {
  return wire_internal::Encode<wire_internal::pb::RunResult>(result);
}
absl::StatusOr<RunResult> DecodeRunResult(std::string_view bytes) {
  return wire_internal::Decode<wire_internal::pb::RunResult>(bytes, "run result");
}

}  // namespace txfn
