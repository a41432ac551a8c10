// The order-preserving key encoding of txfn/value.h.
//
// Format (every value starts with a tag byte >= 0x10, in type order):
//   null     0x10
//   int64    0x20 + 8 bytes big-endian of (v XOR 2^63)
//   float64  0x30 + 8 bytes big-endian of OrderedFloatBits(v) (one canonical NaN)
//   bool     0x40 (false) | 0x41 (true)
//   string   0x50 + escaped bytes + 0x00 0x00
//   bytes    0x60 + escaped bytes + 0x00 0x00
//   array    0x70 + element keys + 0x00
//   object   0x80 + per field (in name order): 0x50 + escaped name + 0x00 0x00 +
//            the field value's key; then 0x00
// Escaping turns each 0x00 byte into 0x00 0xFF, so the terminator 0x00 0x00
// sorts before any continuation and a prefix sorts first. Array elements and
// object fields start with a tag >= 0x10, so the end byte 0x00 sorts before
// any further element: a prefix sorts first there too. The encoding is
// canonical: DecodeKey accepts exactly the outputs of EncodeKey.
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>

#include "fmt/format.h"
#include "lib/value_internal.h"
#include "txfn/value.h"

namespace txfn {
namespace {

constexpr char kTagNull = 0x10;
constexpr char kTagInt64 = 0x20;
constexpr char kTagFloat64 = 0x30;
constexpr char kTagFalse = 0x40;
constexpr char kTagTrue = 0x41;
constexpr char kTagString = 0x50;
constexpr char kTagBytes = 0x60;
constexpr char kTagArray = 0x70;
constexpr char kTagObject = static_cast<char>(0x80);
constexpr char kEnd = 0x00;
constexpr char kEscapedNul = static_cast<char>(0xFF);

void AppendTagged64(char tag, uint64_t u, std::string* out) {
  char buf[9];
  buf[0] = tag;
  value_internal::StoreBigEndian64(buf + 1, u);
  out->append(buf, sizeof(buf));
}

void AppendEscaped(char tag, std::string_view s, std::string* out) {
  out->push_back(tag);
  const char* p = s.data();
  const char* end = p + s.size();
  while (const void* nul = std::memchr(p, 0, static_cast<size_t>(end - p))) {
    const char* q = static_cast<const char*>(nul);
    out->append(p, static_cast<size_t>(q - p) + 1);
    out->push_back(kEscapedNul);
    p = q + 1;
  }
  out->append(p, static_cast<size_t>(end - p));
  out->append(2, kEnd);
}

class KeyDecoder {
 public:
  explicit KeyDecoder(std::string_view in) : in_(in) {}

  absl::StatusOr<Value> Decode(int depth) {
    if (in_.empty()) return Error("truncated key");
    char tag = in_[0];
    in_.remove_prefix(1);
    switch (tag) {
      case kTagNull:
        return Value::Null();
      case kTagInt64: {
        if (in_.size() < 8) return Error("truncated int64");
        uint64_t u = value_internal::LoadBigEndian64(in_.data());
        in_.remove_prefix(8);
        return Value::Int64(static_cast<int64_t>(u ^ value_internal::kSignBit));
      }
      case kTagFloat64: {
        if (in_.size() < 8) return Error("truncated float64");
        uint64_t u = value_internal::LoadBigEndian64(in_.data());
        in_.remove_prefix(8);
        double d = value_internal::FloatFromOrderedBits(u);
        if (std::isnan(d) && u != value_internal::OrderedFloatBits(d)) {
          return Error("non-canonical NaN");
        }
        return Value::Float64(d);
      }
      case kTagFalse:
        return Value::Bool(false);
      case kTagTrue:
        return Value::Bool(true);
      case kTagString: {
        std::string s;
        if (!Unescape(&s)) return Error("bad string");
        return Value::String(std::move(s));
      }
      case kTagBytes: {
        std::string s;
        if (!Unescape(&s)) return Error("bad bytes");
        return Value::Bytes(std::move(s));
      }
      case kTagArray: {
        if (depth >= kMaxDecodeDepth) return Error("nested too deep");
        Value::Array elements;
        while (true) {
          if (in_.empty()) return Error("truncated array");
          if (in_[0] == kEnd) break;
          absl::StatusOr<Value> e = Decode(depth + 1);
          if (!e.ok()) return e.status();
          elements.push_back(*std::move(e));
        }
        in_.remove_prefix(1);
        return Value::FromArray(std::move(elements));
      }
      case kTagObject: {
        if (depth >= kMaxDecodeDepth) return Error("nested too deep");
        Value::Object fields;
        while (true) {
          if (in_.empty()) return Error("truncated object");
          if (in_[0] == kEnd) break;
          if (in_[0] != kTagString) return Error("bad object field");
          in_.remove_prefix(1);
          std::string name;
          if (!Unescape(&name)) return Error("bad field name");
          if (!fields.empty() && !(fields.rbegin()->first < name)) {
            return Error("object field names not strictly ascending");
          }
          absl::StatusOr<Value> field = Decode(depth + 1);
          if (!field.ok()) return field.status();
          fields.emplace_hint(fields.end(), std::move(name), *std::move(field));
        }
        in_.remove_prefix(1);
        return Value::FromObject(std::move(fields));
      }
      default:
        return Error(fmt::format("bad type tag 0x{:02x}", static_cast<unsigned char>(tag)));
    }
  }

  std::string_view rest() const { return in_; }

 private:
  // Reads escaped bytes up to and including the 0x00 0x00 terminator.
  bool Unescape(std::string* out) {
    while (true) {
      const void* nul = std::memchr(in_.data(), 0, in_.size());
      if (nul == nullptr) return false;
      size_t n = static_cast<size_t>(static_cast<const char*>(nul) - in_.data());
      if (n + 1 >= in_.size()) return false;
      out->append(in_.data(), n);
      char next = in_[n + 1];
      in_.remove_prefix(n + 2);
      if (next == kEnd) return true;
      if (next != kEscapedNul) return false;
      out->push_back('\0');
    }
  }

  static absl::Status Error(std::string_view what) {
    return absl::InvalidArgumentError(fmt::format("malformed value key: {}", what));
  }

  std::string_view in_;
};

}  // namespace

void AppendKey(const Value& v, std::string* out) {
  switch (v.type()) {
    case ValueType::kNull:
      out->push_back(kTagNull);
      return;
    case ValueType::kInt64:
      AppendTagged64(kTagInt64, static_cast<uint64_t>(v.int64()) ^ value_internal::kSignBit, out);
      return;
    case ValueType::kFloat64:
      AppendTagged64(kTagFloat64, value_internal::OrderedFloatBits(v.float64()), out);
      return;
    case ValueType::kBool:
      out->push_back(v.boolean() ? kTagTrue : kTagFalse);
      return;
    case ValueType::kString:
      AppendEscaped(kTagString, v.string(), out);
      return;
    case ValueType::kBytes:
      AppendEscaped(kTagBytes, v.bytes(), out);
      return;
    case ValueType::kArray:
      out->push_back(kTagArray);
      for (const Value& e : v.array()) AppendKey(e, out);
      out->push_back(kEnd);
      return;
    case ValueType::kObject:
      out->push_back(kTagObject);
      for (const auto& [name, field] : v.object()) {
        AppendEscaped(kTagString, name, out);
        AppendKey(field, out);
      }
      out->push_back(kEnd);
      return;
  }
}

std::string EncodeKey(const Value& v) {
  std::string out;
  AppendKey(v, &out);
  return out;
}

absl::StatusOr<Value> DecodeKeyPrefix(std::string_view* key) {
  KeyDecoder decoder(*key);
  absl::StatusOr<Value> v = decoder.Decode(0);
  if (v.ok()) *key = decoder.rest();
  return v;
}

absl::StatusOr<Value> DecodeKey(std::string_view key) {
  absl::StatusOr<Value> v = DecodeKeyPrefix(&key);
  if (v.ok() && !key.empty()) {
    return absl::InvalidArgumentError("malformed value key: trailing bytes");
  }
  return v;
}

}  // namespace txfn
