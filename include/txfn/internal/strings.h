// txfn/internal/strings.h — string helpers bridging std and Debian's abseil.
//
// Debian builds abseil with ABSL_OPTION_USE_STD_STRING_VIEW=0, so
// absl::string_view is its own type: absl::StrCat rejects std::string_view and
// heterogeneous lookup in absl containers wants absl::string_view. txfn's API
// uses std::string_view, so messages are built with StrCat below (fmt
// underneath), and lookups convert with ToAbsl.
//
//   return absl::NotFoundError(txfn::internal::StrCat("table '", name, "' not found"));
#ifndef TXFN_INTERNAL_STRINGS_H_
#define TXFN_INTERNAL_STRINGS_H_

#include <iterator>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/string_view.h"
#include "fmt/format.h"

namespace txfn::internal {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

template <typename T>
void AppendPiece(std::string* out, const T& piece) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    out->append(std::string_view(piece));
  } else if constexpr (std::is_same_v<T, absl::string_view>) {
    out->append(piece.data(), piece.size());
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", piece);
  }
}

// Concatenates strings (std or absl views), characters' strings and numbers.
template <typename... Pieces>
std::string StrCat(const Pieces&... pieces) {
  std::string out;
  (AppendPiece(&out, pieces), ...);
  return out;
}

// The first `shown` of `names` joined by ", ", then " and N more" if there are more: the
// names an error message offers (what a caller who mistyped could have meant).
inline std::string FirstNames(const std::vector<std::string>& names, size_t shown = 10) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  if (names.size() > shown) out += StrCat(" and ", names.size() - shown, " more");
  return out;
}

}  // namespace txfn::internal

#endif  // TXFN_INTERNAL_STRINGS_H_
