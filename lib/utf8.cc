#include "lib/utf8.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {
namespace {

// The offset of the first byte of `s` that does not start a valid UTF-8 sequence, or npos.
size_t FirstInvalidByte(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {  // ASCII, the common case
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s.substr(i));
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// At most this much of the path (made of the tenant's field names) goes into a message.
constexpr size_t kMaxQuotedPath = 128;

std::string ShownPath(const std::string& path) {
  if (path.empty()) return ".";
  if (path.size() <= kMaxQuotedPath) return path;
  // Cut on a character boundary: the path's names passed the check.
  return StrCat(path.substr(0, Utf8Boundary(path, kMaxQuotedPath)), "...");
}

// Where the first invalid string or field name is. Its path is built only then, while the
// search unwinds (innermost step first): a valid value costs no allocation.
struct Invalid {
  std::vector<std::string> steps;  // innermost first
  bool in_key = false;             // a field name, not a string value
  unsigned char byte = 0;
  size_t offset = 0;
};

std::optional<Invalid> FindInvalid(const Value& value) {
  if (value.is_string()) {
    const std::string& s = value.string();
    const size_t bad = FirstInvalidByte(s);
    if (bad == std::string_view::npos) return std::nullopt;
    return Invalid{.byte = static_cast<unsigned char>(s[bad]), .offset = bad};
  }
  if (value.is_array()) {
    const Value::Array& items = value.array();
    for (size_t i = 0; i < items.size(); ++i) {
      if (std::optional<Invalid> bad = FindInvalid(items[i])) {
        bad->steps.push_back(StrCat("[", i, "]"));
        return bad;
      }
    }
  } else if (value.is_object()) {
    for (const auto& [key, field] : value.object()) {
      if (const size_t bad = FirstInvalidByte(key); bad != std::string_view::npos) {
        return Invalid{.in_key = true, .byte = static_cast<unsigned char>(key[bad]), .offset = bad};
      }
      if (std::optional<Invalid> bad = FindInvalid(field)) {
        bad->steps.push_back(StrCat(".", key));
        return bad;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

size_t TerminalControlAt(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if ((c < 0x20 && c != '\t') || c == 0x7f) return 1;
  if (c == 0xC2 && i + 1 < s.size()) {
    const auto next = static_cast<unsigned char>(s[i + 1]);
    if (next >= 0x80 && next <= 0x9F) return 2;
  }
  return 0;
}

size_t Utf8Boundary(std::string_view s, size_t n) {
  if (n >= s.size()) return s.size();
  // Step back over continuation bytes to the lead byte at or before n.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

size_t Utf8SequenceLength(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = byte(0);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

absl::Status CheckUtf8(const Value& value, std::string_view what) {
  std::optional<Invalid> bad = FindInvalid(value);
  if (!bad.has_value()) return absl::OkStatus();
  std::string path;
  for (auto step = bad->steps.rbegin(); step != bad->steps.rend(); ++step) path.append(*step);
  return absl::InvalidArgumentError(
      StrCat(what, bad->in_key ? ": a field name in `" : ": the string at `", ShownPath(path),
             "` is not valid UTF-8 (byte 0x", fmt::format("{:02x}", bad->byte), " at offset ",
             bad->offset, ")"));
}

}  // namespace txfn::internal
