// KeyRange helpers of txfn/storage.h.
#include <optional>
#include <string>
#include <string_view>

#include "txfn/storage.h"

namespace txfn {
namespace {

// The immediate successor of `key` in bytewise order.
std::string Successor(std::string_view key) {
  std::string next(key);
  next.push_back('\0');
  return next;
}

}  // namespace

std::optional<std::string> PrefixSuccessor(std::string_view prefix) {
  std::string next(prefix);
  while (!next.empty()) {
    unsigned char last = static_cast<unsigned char>(next.back());
    if (last != 0xff) {
      next.back() = static_cast<char>(last + 1);
      return next;
    }
    next.pop_back();
  }
  return std::nullopt;
}

KeyRange KeyRange::Point(std::string_view key) { return {std::string(key), Successor(key)}; }

KeyRange KeyRange::Prefix(std::string_view prefix) {
  return {std::string(prefix), PrefixSuccessor(prefix)};
}

KeyRange KeyRange::Closed(std::string_view lo, std::string_view hi) {
  return {std::string(lo), Successor(hi)};
}

KeyRange KeyRange::HalfOpen(std::string_view lo, std::string_view hi) {
  return {std::string(lo), std::string(hi)};
}

KeyRange KeyRange::After(std::string_view lo) { return {Successor(lo), std::nullopt}; }

bool KeyRange::Contains(std::string_view key) const {
  return key >= start && (!end.has_value() || key < *end);
}

bool KeyRange::IsEmpty() const { return end.has_value() && *end <= start; }

}  // namespace txfn
