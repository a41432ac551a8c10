// The compact binary encoding of txfn/value.h, and Value::ByteSize.
//
// Format: a header byte, low nibble = ValueType, high nibble = a small payload:
//   null     0x00
//   int64    0x01 + zigzag varint
//   float64  0x02 + 8 bytes little-endian IEEE-754 bits (kept exactly, NaN payloads too)
//   bool     0x03 (false) | 0x13 (true)
//   string   (n << 4 | 0x04) for length n < 15, else 0xF4 + varint(n - 15); then the bytes
//   bytes    as string with type 0x05
//   array    as string with type 0x06, the length being the element count; then elements
//   object   as string with type 0x07, the length being the field count; then per field
//            in ascending name order: varint(name length) + name + value
// The encoding is canonical: varints are minimal, names strictly ascending,
// unused nibbles zero; DecodeBinary accepts exactly the outputs of EncodeBinary.
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "fmt/format.h"
#include "txfn/value.h"

namespace txfn {
namespace {

constexpr unsigned kInlineLengthLimit = 15;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t u) { return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1)); }

void AppendVarint(uint64_t v, std::string* out) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out->append(buf, n);
}

size_t HeaderSize(size_t length) {
  return length < kInlineLengthLimit ? 1 : 1 + VarintSize(length - kInlineLengthLimit);
}

void AppendHeader(ValueType type, size_t length, std::string* out) {
  unsigned t = static_cast<unsigned>(type);
  if (length < kInlineLengthLimit) {
    out->push_back(static_cast<char>((length << 4) | t));
  } else {
    out->push_back(static_cast<char>(0xF0 | t));
    AppendVarint(length - kInlineLengthLimit, out);
  }
}

size_t EncodedSize(const Value& v) {
  switch (v.type()) {
    case ValueType::kNull:
    case ValueType::kBool:
      return 1;
    case ValueType::kInt64:
      return 1 + VarintSize(ZigZag(v.int64()));
    case ValueType::kFloat64:
      return 9;
    case ValueType::kString:
      return HeaderSize(v.string().size()) + v.string().size();
    case ValueType::kBytes:
      return HeaderSize(v.bytes().size()) + v.bytes().size();
    case ValueType::kArray: {
      size_t n = HeaderSize(v.array().size());
      for (const Value& e : v.array()) n += EncodedSize(e);
      return n;
    }
    case ValueType::kObject: {
      size_t n = HeaderSize(v.object().size());
      for (const auto& [name, field] : v.object()) {
        n += VarintSize(name.size()) + name.size() + EncodedSize(field);
      }
      return n;
    }
  }
  return 0;
}

void AppendBinary(const Value& v, std::string* out) {
  switch (v.type()) {
    case ValueType::kNull:
      out->push_back(0x00);
      return;
    case ValueType::kBool:
      out->push_back(v.boolean() ? 0x13 : 0x03);
      return;
    case ValueType::kInt64:
      out->push_back(0x01);
      AppendVarint(ZigZag(v.int64()), out);
      return;
    case ValueType::kFloat64: {
      char buf[9];
      buf[0] = 0x02;
      uint64_t bits;
      double d = v.float64();
      std::memcpy(&bits, &d, 8);
      for (int i = 1; i <= 8; ++i) {
        buf[i] = static_cast<char>(bits & 0xFF);
        bits >>= 8;
      }
      out->append(buf, sizeof(buf));
      return;
    }
    case ValueType::kString:
      AppendHeader(ValueType::kString, v.string().size(), out);
      out->append(v.string());
      return;
    case ValueType::kBytes:
      AppendHeader(ValueType::kBytes, v.bytes().size(), out);
      out->append(v.bytes());
      return;
    case ValueType::kArray:
      AppendHeader(ValueType::kArray, v.array().size(), out);
      for (const Value& e : v.array()) AppendBinary(e, out);
      return;
    case ValueType::kObject:
      AppendHeader(ValueType::kObject, v.object().size(), out);
      for (const auto& [name, field] : v.object()) {
        AppendVarint(name.size(), out);
        out->append(name);
        AppendBinary(field, out);
      }
      return;
  }
}

class BinaryDecoder {
 public:
  explicit BinaryDecoder(std::string_view in) : in_(in) {}

  absl::StatusOr<Value> Decode(int depth) {
    if (in_.empty()) return Error("truncated");
    unsigned char header = static_cast<unsigned char>(in_[0]);
    in_.remove_prefix(1);
    unsigned type = header & 0x0F;
    unsigned nibble = header >> 4;
    switch (type) {
      case static_cast<unsigned>(ValueType::kNull):
        if (nibble != 0) return Error("bad null header");
        return Value::Null();
      case static_cast<unsigned>(ValueType::kBool):
        if (nibble > 1) return Error("bad bool header");
        return Value::Bool(nibble == 1);
      case static_cast<unsigned>(ValueType::kInt64): {
        uint64_t u;
        if (nibble != 0 || !ReadVarint(&u)) return Error("bad int64");
        return Value::Int64(UnZigZag(u));
      }
      case static_cast<unsigned>(ValueType::kFloat64): {
        if (nibble != 0 || in_.size() < 8) return Error("bad float64");
        uint64_t bits = 0;
        for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<unsigned char>(in_[i]);
        in_.remove_prefix(8);
        double d;
        std::memcpy(&d, &bits, 8);
        return Value::Float64(d);
      }
      case static_cast<unsigned>(ValueType::kString):
      case static_cast<unsigned>(ValueType::kBytes): {
        size_t n;
        if (!ReadLength(nibble, /*min_item_bytes=*/1, &n)) return Error("bad string length");
        std::string s(in_.substr(0, n));
        in_.remove_prefix(n);
        return type == static_cast<unsigned>(ValueType::kString) ? Value::String(std::move(s))
                                                                 : Value::Bytes(std::move(s));
      }
      case static_cast<unsigned>(ValueType::kArray): {
        size_t n;
        if (!ReadLength(nibble, /*min_item_bytes=*/1, &n)) return Error("bad array length");
        if (depth >= kMaxDecodeDepth) return Error("nested too deep");
        Value::Array elements;
        // n <= remaining bytes, but nested arrays could each claim that much
        // before failing: reserve a bounded amount and let real elements grow it.
        elements.reserve(std::min<size_t>(n, 1024));
        for (size_t i = 0; i < n; ++i) {
          absl::StatusOr<Value> e = Decode(depth + 1);
          if (!e.ok()) return e.status();
          elements.push_back(*std::move(e));
        }
        return Value::FromArray(std::move(elements));
      }
      case static_cast<unsigned>(ValueType::kObject): {
        size_t n;
        if (!ReadLength(nibble, /*min_item_bytes=*/2, &n)) return Error("bad object length");
        if (depth >= kMaxDecodeDepth) return Error("nested too deep");
        Value::Object fields;
        for (size_t i = 0; i < n; ++i) {
          uint64_t len;
          if (!ReadVarint(&len) || len > in_.size()) return Error("bad field name length");
          std::string name(in_.substr(0, len));
          in_.remove_prefix(len);
          if (!fields.empty() && !(fields.rbegin()->first < name)) {
            return Error("object field names not strictly ascending");
          }
          absl::StatusOr<Value> field = Decode(depth + 1);
          if (!field.ok()) return field.status();
          fields.emplace_hint(fields.end(), std::move(name), *std::move(field));
        }
        return Value::FromObject(std::move(fields));
      }
      default:
        return Error(fmt::format("bad type {}", type));
    }
  }

  bool empty() const { return in_.empty(); }

 private:
  // A minimal (canonical) LEB128 varint of at most 64 bits.
  bool ReadVarint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0, i = 0; i < 10; ++i, shift += 7) {
      if (static_cast<size_t>(i) >= in_.size()) return false;
      unsigned char b = static_cast<unsigned char>(in_[i]);
      if (i == 9 && b > 1) return false;  // more than 64 bits
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && i > 0) return false;  // overlong
        in_.remove_prefix(static_cast<size_t>(i) + 1);
        *out = v;
        return true;
      }
    }
    return false;
  }

  // A length from the header nibble (and varint). Fails unless the remaining
  // input could hold that many items of at least `min_item_bytes` each, so a
  // hostile length never causes a large allocation.
  bool ReadLength(unsigned nibble, size_t min_item_bytes, size_t* out) {
    uint64_t n = nibble;
    if (nibble == kInlineLengthLimit) {
      uint64_t extra;
      if (!ReadVarint(&extra) || extra > in_.size()) return false;
      n = extra + kInlineLengthLimit;
    }
    if (n > in_.size() / min_item_bytes) return false;
    *out = static_cast<size_t>(n);
    return true;
  }

  static absl::Status Error(std::string_view what) {
    return absl::InvalidArgumentError(fmt::format("malformed binary value: {}", what));
  }

  std::string_view in_;
};

}  // namespace

size_t Value::ByteSize() const { return EncodedSize(*this); }

std::string EncodeBinary(const Value& v) {
  std::string out;
  out.reserve(EncodedSize(v));
  AppendBinary(v, &out);
  return out;
}

absl::StatusOr<Value> DecodeBinary(std::string_view data) {
  BinaryDecoder decoder(data);
  absl::StatusOr<Value> v = decoder.Decode(0);
  if (v.ok() && !decoder.empty()) {
    return absl::InvalidArgumentError("malformed binary value: trailing bytes");
  }
  return v;
}

}  // namespace txfn
