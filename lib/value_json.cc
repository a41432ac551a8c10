// JSON in and out for txfn/value.h.
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/charconv.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "fmt/format.h"
#include "lib/utf8.h"
#include "txfn/value.h"

namespace txfn {
namespace {

constexpr std::string_view kInt64Tag = "$int64";
constexpr std::string_view kFloat64Tag = "$float64";
constexpr std::string_view kBytesTag = "$bytes";

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  while (!s.empty()) {
    unsigned char c = static_cast<unsigned char>(s[0]);
    if (c >= 0x80) {
      size_t n = internal::Utf8SequenceLength(s);
      if (n == 0) {
        out->append("\xEF\xBF\xBD");  // U+FFFD for a byte that is not UTF-8
        n = 1;
      } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(s[1]) <= 0x9F) {
        // C1 controls (U+0080..U+009F) escaped, as C0 ones are: U+009B is a CSI to some
        // terminals, and JSON printed by a tool should not drive the terminal it lands on.
        const auto low = static_cast<unsigned char>(s[1]);
        out->append("\\u00");
        out->push_back(kHex[low >> 4]);
        out->push_back(kHex[low & 0xF]);
      } else {
        out->append(s.data(), n);
      }
      s.remove_prefix(n);
      continue;
    }
    s.remove_prefix(1);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {  // C0 controls and DEL
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void AppendTagged(std::string_view tag, std::string_view payload, std::string* out) {
  out->append("{\"");
  out->append(tag);
  out->append("\":\"");
  out->append(payload);
  out->append("\"}");
}

void AppendJson(const Value& v, std::string* out) {
  switch (v.type()) {
    case ValueType::kNull:
      out->append("null");
      return;
    case ValueType::kBool:
      out->append(v.boolean() ? "true" : "false");
      return;
    case ValueType::kInt64: {
      char buf[24];
      auto result = std::to_chars(buf, buf + sizeof(buf), v.int64());
      AppendTagged(kInt64Tag, std::string_view(buf, static_cast<size_t>(result.ptr - buf)), out);
      return;
    }
    case ValueType::kFloat64: {
      double d = v.float64();
      if (std::isnan(d)) {
        AppendTagged(kFloat64Tag, "NaN", out);
      } else if (std::isinf(d)) {
        AppendTagged(kFloat64Tag, d > 0 ? "Infinity" : "-Infinity", out);
      } else if (d == 0 && std::signbit(d)) {
        out->append("-0.0");
      } else {
        char buf[32];
        auto result = std::to_chars(buf, buf + sizeof(buf), d);
        out->append(buf, static_cast<size_t>(result.ptr - buf));
      }
      return;
    }
    case ValueType::kString:
      AppendJsonString(v.string(), out);
      return;
    case ValueType::kBytes:
      AppendTagged(kBytesTag, absl::Base64Escape(v.bytes()), out);
      return;
    case ValueType::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Value& e : v.array()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(e, out);
      }
      out->push_back(']');
      return;
    }
    case ValueType::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [name, field] : v.object()) {
        if (!first) out->push_back(',');
        first = false;
        AppendJsonString(name, out);
        out->push_back(':');
        AppendJson(field, out);
      }
      out->push_back('}');
      return;
    }
  }
}

class JsonParser {
 public:
  explicit JsonParser(std::string_view in) : in_(in) {}

  absl::StatusOr<Value> ParseDocument() {
    absl::StatusOr<Value> v = ParseValue(0);
    if (!v.ok()) return v;
    SkipSpace();
    if (pos_ != in_.size()) return Error("trailing characters");
    return v;
  }

 private:
  // `depth` counts the arrays and objects around the value being parsed.
  absl::StatusOr<Value> ParseValue(int depth) {
    SkipSpace();
    if (pos_ >= in_.size()) return Error("unexpected end of input");
    char c = in_[pos_];
    switch (c) {
      case '{':
        return ParseObject(depth);
      case '[':
        return ParseArray(depth);
      case '"': {
        std::string s;
        if (absl::Status st = ParseString(&s); !st.ok()) return st;
        return Value::String(std::move(s));
      }
      case 't':
        if (ConsumeWord("true")) return Value::Bool(true);
        return Error("invalid literal");
      case 'f':
        if (ConsumeWord("false")) return Value::Bool(false);
        return Error("invalid literal");
      case 'n':
        if (ConsumeWord("null")) return Value::Null();
        return Error("invalid literal");
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber();
        return Error("unexpected character");
    }
  }

  absl::StatusOr<Value> ParseArray(int depth) {
    if (depth >= kMaxDecodeDepth) return Error("nested too deep");
    ++pos_;  // '['
    Value::Array elements;
    SkipSpace();
    if (Consume(']')) return Value::FromArray(std::move(elements));
    while (true) {
      path_.push_back({.index = elements.size()});
      absl::StatusOr<Value> e = ParseValue(depth + 1);
      if (!e.ok()) return e.status();
      path_.pop_back();
      elements.push_back(*std::move(e));
      SkipSpace();
      if (Consume(']')) return Value::FromArray(std::move(elements));
      if (!Consume(',')) return Error("expected ',' or ']' in array");
    }
  }

  absl::StatusOr<Value> ParseObject(int depth) {
    ++pos_;  // '{'
    Value::Object fields;
    SkipSpace();
    if (Consume('}')) return Value::FromObject(std::move(fields));
    std::string name;
    if (absl::Status st = ParseName(&name); !st.ok()) return st;
    if (!name.empty() && name[0] == '$') return ParseTagged(name);
    if (depth >= kMaxDecodeDepth) return Error("nested too deep");
    while (true) {
      path_.push_back({.name = name, .is_field = true});
      absl::StatusOr<Value> field = ParseValue(depth + 1);
      if (!field.ok()) return field.status();
      if (fields.contains(name)) return Error("duplicate field name");
      path_.pop_back();
      fields.try_emplace(std::move(name), *std::move(field));
      SkipSpace();
      if (Consume('}')) return Value::FromObject(std::move(fields));
      if (!Consume(',')) return Error("expected ',' or '}' in object");
      SkipSpace();
      name.clear();
      if (absl::Status st = ParseName(&name); !st.ok()) return st;
      if (!name.empty() && name[0] == '$') {
        return Error("field names starting with '$' are reserved");
      }
    }
  }

  // A field name and the ':' after it.
  absl::Status ParseName(std::string* name) {
    if (pos_ >= in_.size() || in_[pos_] != '"') return Error("expected a field name");
    if (absl::Status st = ParseString(name); !st.ok()) return st;
    SkipSpace();
    if (!Consume(':')) return Error("expected ':' after a field name");
    return absl::OkStatus();
  }

  // The rest of {"$tag":"payload"} after the ':'.
  absl::StatusOr<Value> ParseTagged(std::string_view tag) {
    SkipSpace();
    if (pos_ >= in_.size() || in_[pos_] != '"') return Error("expected a string after a tag");
    std::string payload;
    if (absl::Status st = ParseString(&payload); !st.ok()) return st;
    SkipSpace();
    if (!Consume('}')) return Error("a tagged value must have exactly one field");
    if (tag == kInt64Tag) {
      int64_t v;
      if (!IsCanonicalInteger(payload) || !absl::SimpleAtoi(payload, &v)) {
        return Error("bad $int64 value");
      }
      return Value::Int64(v);
    }
    if (tag == kFloat64Tag) {
      if (payload == "NaN") return Value::Float64(std::numeric_limits<double>::quiet_NaN());
      if (payload == "Infinity") return Value::Float64(std::numeric_limits<double>::infinity());
      if (payload == "-Infinity") {
        return Value::Float64(-std::numeric_limits<double>::infinity());
      }
      return Error("bad $float64 value");
    }
    if (tag == kBytesTag) {
      std::string bytes;
      if (!absl::Base64Unescape(payload, &bytes)) return Error("bad $bytes base64");
      return Value::Bytes(std::move(bytes));
    }
    return Error("unknown '$' tag");
  }

  static bool IsCanonicalInteger(std::string_view s) {
    if (!s.empty() && s[0] == '-') s.remove_prefix(1);
    if (s.empty() || (s[0] == '0' && s.size() > 1)) return false;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  }

  absl::StatusOr<Value> ParseNumber() {
    size_t start = pos_;
    Consume('-');
    if (Consume('0')) {
      // no further integer digits
    } else if (!ConsumeDigits()) {
      return Error("bad number");
    }
    if (Consume('.') && !ConsumeDigits()) return Error("bad number fraction");
    if (Consume('e') || Consume('E')) {
      if (!Consume('+')) Consume('-');
      if (!ConsumeDigits()) return Error("bad number exponent");
    }
    double d = 0;
    auto result = absl::from_chars(in_.data() + start, in_.data() + pos_, d);
    if (result.ptr != in_.data() + pos_) return Error("bad number");
    if (result.ec == std::errc::result_out_of_range && std::abs(d) > 1) {
      d = std::copysign(std::numeric_limits<double>::infinity(), d);  // as JSON.parse does
    }
    return Value::Float64(d);
  }

  bool ConsumeDigits() {
    size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // '"'
    while (true) {
      if (pos_ >= in_.size()) return Error("unterminated string");
      unsigned char c = static_cast<unsigned char>(in_[pos_]);
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("control character in string");
      if (c >= 0x80) {
        size_t n = internal::Utf8SequenceLength(in_.substr(pos_));
        if (n == 0) return Error("invalid UTF-8 in string");
        out->append(in_.data() + pos_, n);
        pos_ += n;
        continue;
      }
      ++pos_;
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (pos_ >= in_.size()) return Error("unterminated string");
      char e = in_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp;
          if (!ParseHex4(&cp)) return Error("bad \\u escape");
          if (cp >= 0xDC00 && cp <= 0xDFFF) return Error("unpaired surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low;
            if (!Consume('\\') || !Consume('u') || !ParseHex4(&low) || low < 0xDC00 ||
                low > 0xDFFF) {
              return Error("unpaired surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error("bad escape in string");
      }
    }
  }

  bool ParseHex4(uint32_t* out) {
    if (in_.size() - pos_ < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = in_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    *out = v;
    return true;
  }

  void SkipSpace() {
    while (pos_ < in_.size() &&
           (in_[pos_] == ' ' || in_[pos_] == '\t' || in_[pos_] == '\n' || in_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(char c) {
    if (pos_ < in_.size() && in_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool ConsumeWord(std::string_view word) {
    if (in_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  // "invalid JSON at offset N (at $.items[2].price): what", the path naming the field or
  // element being parsed (a field name that is no identifier quoted: $["a b"]).
  absl::Status Error(std::string_view what) const {
    if (path_.empty()) {
      return absl::InvalidArgumentError(fmt::format("invalid JSON at offset {}: {}", pos_, what));
    }
    std::string path = "$";
    for (const PathStep& step : path_) {
      if (!step.is_field) {
        path += fmt::format("[{}]", step.index);
      } else if (IsIdentifier(step.name)) {
        path += ".";
        path += step.name;
      } else {
        path += "[";
        AppendJsonString(step.name, &path);
        path += "]";
      }
    }
    return absl::InvalidArgumentError(
        fmt::format("invalid JSON at offset {} (at {}): {}", pos_, path, what));
  }

  static bool IsIdentifier(std::string_view s) {
    if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
    for (char c : s) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '$') {
        return false;
      }
    }
    return true;
  }

  // A field (its name, alive in ParseObject while its value is parsed) or an array element.
  struct PathStep {
    std::string_view name;
    size_t index = 0;
    bool is_field = false;
  };

  std::string_view in_;
  size_t pos_ = 0;
  std::vector<PathStep> path_;
};

}  // namespace

std::string ToJson(const Value& v) {
  std::string out;
  AppendJson(v, &out);
  return out;
}

absl::StatusOr<Value> FromJson(std::string_view json) { return JsonParser(json).ParseDocument(); }

}  // namespace txfn
