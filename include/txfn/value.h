// txfn/value.h — the data model that crosses every txfn boundary.
//
// A Value is one of: null, int64 (a JS BigInt), float64 (a JS number), bool,
// string (UTF-8), bytes (an ArrayBuffer), array, object. Documents, function
// arguments, results and index keys are all Values.
//
//   txfn::Value msg = txfn::Value::FromObject({
//       {"channel", txfn::Value::String("general")},
//       {"likes", txfn::Value::Int64(3)},
//   });
//   std::string key = txfn::EncodeKey(msg);          // memcmp order == Compare order
//   std::string wire = txfn::EncodeBinary(msg);      // compact, for storage
//   absl::StatusOr<txfn::Value> back = txfn::DecodeBinary(wire);
//   std::string json = txfn::ToJson(msg);  // {"channel":"general","likes":{"$int64":"3"}}
//
// Order: values of different types order by type, in the order of ValueType
// below (null < int64 < float64 < bool < string < bytes < array < object).
// Within a type: integers and booleans numerically; floats by IEEE-754
// totalOrder restricted to one NaN (-inf < ... < -0.0 < +0.0 < ... < +inf < NaN,
// all NaNs equal); strings and bytes bytewise; arrays element by element, a
// prefix first; objects field by field (name, then value) in name order, a
// prefix first.
//
// Thread safety: a Value is immutable after construction; arrays and objects
// are shared between copies, so copying is cheap and copies may be read from
// any thread concurrently.
//
// Recursion: Compare, the encoders and the destructor recurse once per level of
// nesting. Decoders refuse values nested deeper than kMaxDecodeDepth, and
// documents are limited to DocumentLimits::max_nesting_depth, so values from
// outside are shallow; do not build values nested thousands deep by hand.
#ifndef TXFN_VALUE_H_
#define TXFN_VALUE_H_

#include <compare>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace txfn {

// The types, in their cross-type sort order. The numeric values are stable and
// are used by the encodings.
enum class ValueType : uint8_t {
  kNull = 0,
  kInt64 = 1,
  kFloat64 = 2,
  kBool = 3,
  kString = 4,
  kBytes = 5,
  kArray = 6,
  kObject = 7,
};

// "null", "int64", "float64", "bool", "string", "bytes", "array", "object".
std::string_view ValueTypeName(ValueType type);

class Value {
 public:
  using Array = std::vector<Value>;
  // Fields sorted by name; names are unique.
  using Object = std::map<std::string, Value, std::less<>>;

  // Null.
  Value() = default;

  static Value Null() { return Value(); }
  static Value Int64(int64_t v);
  static Value Float64(double v);
  static Value Bool(bool v);
  static Value String(std::string v);
  static Value Bytes(std::string v);
  static Value FromArray(Array v);
  static Value FromObject(Object v);

  ValueType type() const { return static_cast<ValueType>(rep_.index()); }
  bool is_null() const { return type() == ValueType::kNull; }
  bool is_int64() const { return type() == ValueType::kInt64; }
  bool is_float64() const { return type() == ValueType::kFloat64; }
  bool is_bool() const { return type() == ValueType::kBool; }
  bool is_string() const { return type() == ValueType::kString; }
  bool is_bytes() const { return type() == ValueType::kBytes; }
  bool is_array() const { return type() == ValueType::kArray; }
  bool is_object() const { return type() == ValueType::kObject; }

  // Accessors. Precondition: the Value has that type (checked in every build: another type
  // prints which accessor met which type and aborts). A JS number arrives as float64, a BigInt
  // as int64.
  int64_t int64() const;
  double float64() const;
  bool boolean() const;
  const std::string& string() const;
  const std::string& bytes() const;
  const Array& array() const;
  const Object& object() const;

  // The field `name` of an object; nullptr when absent or not an object.
  const Value* Find(std::string_view name) const;
  // Follows a dotted field path ("author.name"); nullptr when any step is
  // absent or not an object.
  const Value* FindPath(std::string_view dotted_path) const;

  // The size this value counts for against size limits: its EncodeBinary size,
  // computed without encoding or allocating.
  size_t ByteSize() const;

  // A short human-readable rendering (JSON), for logs and test failures.
  std::string DebugString() const;

  // Total order, see the file comment. Returns -1, 0 or 1. Compares the Values
  // directly (no encoding); O(size of the common prefix).
  friend int Compare(const Value& a, const Value& b);
  friend bool operator==(const Value& a, const Value& b) { return Compare(a, b) == 0; }
  friend std::strong_ordering operator<=>(const Value& a, const Value& b) {
    return Compare(a, b) <=> 0;
  }

  template <typename H>
  friend H AbslHashValue(H h, const Value& v) {
    return H::combine(std::move(h), v.HashKey());
  }

 private:
  struct BytesRep {
    std::string data;
  };
  using Rep = std::variant<std::monostate, int64_t, double, bool, std::string, BytesRep,
                           std::shared_ptr<const Array>, std::shared_ptr<const Object>>;
  explicit Value(Rep rep) : rep_(std::move(rep)) {}
  std::string HashKey() const;

  Rep rep_;
};

// The total order of Value (declared again at namespace scope so that the
// qualified name txfn::Compare works, not only argument-dependent lookup).
int Compare(const Value& a, const Value& b);

// ---- Order-preserving key encoding -------------------------------------------
//
// memcmp(EncodeKey(a), EncodeKey(b)) has the sign of Compare(a, b), and the
// encoding is self-delimiting: for tuples, the concatenation
// EncodeKey(a1)+EncodeKey(a2) orders like (a1, a2) lexicographically. Index
// keys are such concatenations.
std::string EncodeKey(const Value& v);
void AppendKey(const Value& v, std::string* out);
// The encoding is canonical: DecodeKey accepts exactly the strings EncodeKey
// produces (so every NaN encodes as the one NaN, and decodes as it). Format in
// lib/value_key.cc: a tag byte per type (0x10 null ... 0x80 object), int64 and
// float64 as 8 order-mapped big-endian bytes, strings/bytes with 0x00 escaped
// as 0x00 0xFF and ended by 0x00 0x00, arrays/objects ended by 0x00.
// AppendKey appends to `*out` without temporaries (the index-maintenance path).
//
// Decodes exactly one key-encoded value that spans all of `key`.
// InvalidArgument on malformed input (including nesting beyond
// kMaxDecodeDepth). Never crashes.
absl::StatusOr<Value> DecodeKey(std::string_view key);
// Decodes one key-encoded value from the front of `*key` and advances it past
// that value; on error `*key` is left unchanged.
absl::StatusOr<Value> DecodeKeyPrefix(std::string_view* key);

// Every encoded key starts with a type tag byte >= 0x10, so single bytes below
// 0x10 are free for markers in tuples. Index keys encode a field the document
// lacks as this byte: it sorts before every Value (and DecodeKey rejects it).
inline constexpr char kKeyAbsentField = '\x01';

// ---- Compact binary encoding ---------------------------------------------------
//
// The storage format of documents. Not order-preserving; smaller and faster
// than the key encoding. DecodeBinary returns InvalidArgument on malformed
// input (including nesting beyond kMaxDecodeDepth) and never crashes, and never
// allocates more than a small multiple of the input size. Float bits (NaN
// payloads, -0.0) are kept exactly. Canonical: DecodeBinary accepts exactly
// the strings EncodeBinary produces. Format in lib/value_binary.cc.
std::string EncodeBinary(const Value& v);
absl::StatusOr<Value> DecodeBinary(std::string_view data);

// ---- JSON ------------------------------------------------------------------------
//
// null/bool/string/array/object map to themselves; float64 to a JSON number
// (NaN and ±Infinity as {"$float64":"NaN"|"Infinity"|"-Infinity"}, -0.0 as -0.0);
// int64 as {"$int64":"<decimal>"} so it round-trips exactly; bytes as
// {"$bytes":"<base64>"}. Field names starting with '$' are reserved for these
// tags, so the encoding is unambiguous. FromJson reads JSON numbers as float64
// (out of range: ±Infinity, as JSON.parse), rejects '$' field names other
// than one tag alone, duplicate field names, invalid UTF-8 and unpaired
// surrogate escapes, with InvalidArgument. ToJson writes strings as UTF-8
// (control characters escaped); a byte that is not valid UTF-8 is written as
// U+FFFD, and a '$' field name is written as is: neither round-trips (field
// names of valid documents never do either, and values converted from
// JavaScript, results and scheduled calls' arguments, refuse them).
std::string ToJson(const Value& v);

// Writes ToJson(v): readable values in test failures (googletest uses it) and logs.
std::ostream& operator<<(std::ostream& os, const Value& v);
absl::StatusOr<Value> FromJson(std::string_view json);

// Deepest nesting any decoder accepts: at most this many arrays/objects within
// each other (a tagged JSON scalar such as {"$int64":"1"} does not count).
inline constexpr int kMaxDecodeDepth = 64;

// ---- Documents -------------------------------------------------------------------

// Limits a document must satisfy to be stored. Defaults are Convex's.
struct DocumentLimits {
  size_t max_size_bytes = 1 << 20;  // ByteSize() of the whole document
  int max_nesting_depth = 16;       // the document itself is depth 1
  // Of every object; a document's system fields (_id, _creationTime) do not count.
  size_t max_fields_per_object = 1024;
  size_t max_array_length = 8192;
  size_t max_field_name_bytes = 64;
};

// Whether `name` may be a user field name: a non-empty identifier of
// [A-Za-z0-9_] not starting with a digit, at most max_field_name_bytes long,
// and not starting with '$' or '_' (those are reserved for system fields).
bool IsValidFieldName(std::string_view name, const DocumentLimits& limits = {});

// Checks that `doc` is an object within `limits` whose user field names (at
// every depth) are valid. Top-level system fields "_id" and "_creationTime"
// are allowed. Returns InvalidArgument naming the offending path (such as
// `author.tags[3]`) and the limit's field name (such as `max_array_length`).
absl::Status ValidateDocument(const Value& doc, const DocumentLimits& limits = {});

}  // namespace txfn

#endif  // TXFN_VALUE_H_
