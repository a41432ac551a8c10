// lib/utf8.h — UTF-8 validation shared by the Value encodings and the call boundaries, and
// the control characters printers escape (private).
#ifndef TXFN_LIB_UTF8_H_
#define TXFN_LIB_UTF8_H_

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"
#include "txfn/value.h"

namespace txfn::internal {

// The length of the valid UTF-8 sequence at the front of `s` (1..4), or 0 when it is not
// valid UTF-8 (overlong forms, surrogates and values above U+10FFFF are invalid). `s` must
// not be empty.
size_t Utf8SequenceLength(std::string_view s);

// The length of the longest prefix of s[0, n) that does not end inside a UTF-8 sequence: where
// to cut text to at most n bytes (n past the end: s.size()).
size_t Utf8Boundary(std::string_view s, size_t n);

// The length of the control character at s[i] (0 if there is none) that could forge terminal
// output if printed as is: C0 but tab (newline included), DEL, and C1 (U+0080..U+009F, UTF-8
// C2 80..C2 9F: U+009B is a CSI to some terminals). Printers escape these; the console budgets
// charge for escaping them (a newline: as the start of another line). i < s.size().
size_t TerminalControlAt(std::string_view s, size_t i);

// OK if every string and object key in `value` is valid UTF-8. Otherwise InvalidArgument:
// "<what>: the string at `<path>` is not valid UTF-8 (byte 0xNN at offset K)". A string
// such as a JavaScript string holds text: invalid bytes would be replaced (U+FFFD) on
// the way into JavaScript, and two different values would become one. Bytes belong in a
// bytes value.
[[nodiscard]] absl::Status CheckUtf8(const Value& value, std::string_view what);

}  // namespace txfn::internal

#endif  // TXFN_LIB_UTF8_H_
