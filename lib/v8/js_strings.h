// lib/v8/js_strings.h — bounded conversions between V8 and C++ strings.
//
// Tenant code controls most strings the runtime touches: arguments of the
// ctx.db natives, thrown values, stacks, log lines. A string can be up to
// v8::String::kMaxLength (~2^29) characters, so copying one whole into C++
// or echoing it into an error message could cost hundreds of MiB outside the
// isolate's heap limit, and a message longer than V8 accepts would make
// ToLocalChecked() abort the process. Every helper here is bounded and never
// fails: text beyond a bound is cut (and marked), a V8 string that cannot be
// made becomes a short fixed one.
//
//   std::string id = Utf8Prefix(isolate, info[0].As<v8::String>(), 64);
//   isolate->ThrowException(v8::Exception::Error(MessageString(isolate, text)));
//
// Thread safety: the functions run on the isolate's thread, inside a
// HandleScope; none calls into JavaScript.
#ifndef TXFN_LIB_V8_JS_STRINGS_H_
#define TXFN_LIB_V8_JS_STRINGS_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "v8-isolate.h"
#include "v8-local-handle.h"
#include "v8-primitive.h"
#include "v8-value.h"

namespace txfn::internal {

// Longest status message built from JavaScript text (an error's stack, a
// thrown string): enough for any real stack, small enough to log.
inline constexpr size_t kMaxJsMessageBytes = size_t{16} << 10;

// How much of a tenant-supplied string an error message quotes.
inline constexpr size_t kQuoteBytes = 64;

// A V8 string of `s`, for names and messages made by txfn. Text past
// kMaxJsMessageBytes is cut; never returns an empty handle.
v8::Local<v8::String> MessageString(v8::Isolate* isolate, std::string_view s);

// A V8 string of exactly `s`; empty if V8 cannot hold it.
v8::MaybeLocal<v8::String> NewString(v8::Isolate* isolate, std::string_view s);

// Longer strings are not read at all: V8 flattens a whole string to read
// any part of it, which for a string built by concatenation is one
// allocation as large as the string.
inline constexpr size_t kMaxReadableChars = size_t{1} << 24;

// The UTF-8 of `s`, at most `max_bytes` bytes (cut at a character boundary,
// then "…" appended when anything was cut); for a string longer than
// kMaxReadableChars, "(a string of N characters)".
std::string Utf8Prefix(v8::Isolate* isolate, v8::Local<v8::String> s, size_t max_bytes);

// The index of the first unpaired UTF-16 surrogate of `s` (a string UTF-8
// cannot hold: WriteUtf8 makes it U+FFFD), if any. Reads all of `s`: for
// strings already bounded.
std::optional<int> LoneSurrogateAt(v8::Isolate* isolate, v8::Local<v8::String> s);

// LoneSurrogateAt(s), given `utf8`, the UTF-8 WriteUtf8 made of `s` (or of its start): only a
// U+FFFD there makes `s` worth reading again, so the common case costs one search.
std::optional<int> LoneSurrogateIn(v8::Isolate* isolate, v8::Local<v8::String> s,
                                   std::string_view utf8);

// The name of the API private symbol (v8::Private::ForApi) under which a
// hardened context's override accessors (harden_js.h) keep the data value
// they replaced, so DescribeValue can read it without running them.
inline constexpr std::string_view kOriginalValueKey = "txfn.original";

// A short rendering of any value for an error message, computed without
// running JavaScript (no toString, getters or Proxy traps): strings as their
// prefix, other values as V8's side-effect-free detail string.
std::string DescribeValue(v8::Isolate* isolate, v8::Local<v8::Value> v,
                          size_t max_bytes = kQuoteBytes);

// `s` quoted for an error message, cut to kQuoteBytes: "abc" or "abc…" (N bytes).
std::string Quote(std::string_view s);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_JS_STRINGS_H_
