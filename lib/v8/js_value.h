// lib/v8/js_value.h — conversion between txfn::Value and JavaScript values.
//
// See function_runner.h for the mapping. Both directions run on the isolate's
// thread inside a HandleScope and an entered context.
#ifndef TXFN_LIB_V8_JS_VALUE_H_
#define TXFN_LIB_V8_JS_VALUE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "txfn/isolate_scheduler.h"
#include "txfn/value.h"
#include "v8.h"

namespace txfn::internal {

// The JS value of `value`. InvalidArgument if a string or buffer is too large
// for V8.
absl::StatusOr<v8::Local<v8::Value>> ToJs(v8::Local<v8::Context> context, const Value& value);

// The Value of `js`. InvalidArgument (naming the path, e.g. `a.b[2]`) for
// functions, symbols, cyclic or non-plain objects, getters that throw, BigInts
// outside int64 and nesting deeper than kMaxDecodeDepth; ResourceExhausted when
// the value exceeds `max_bytes` (its encoded size) or would take more than
// kConversionMemoryFactor * max_bytes of memory as a Value (many tiny
// elements). If JS execution is being terminated, or `lease` (optional) hit a
// limit, returns Cancelled and leaves the termination pending: the conversion
// checks both as it goes (it may take long for a value of millions of
// elements, and it runs in C++, where V8's termination does not reach), and
// holds each element's handles only while converting it. With `undefined_fields`, the names
// of the fields of `js` (an object, at its top level only) whose value was undefined, which
// the Value leaves out, are appended there (ctx.db.patch removes those fields).
absl::StatusOr<Value> FromJs(v8::Local<v8::Context> context, v8::Local<v8::Value> js,
                             size_t max_bytes, const IsolateLease* lease = nullptr,
                             std::vector<std::string>* undefined_fields = nullptr);

// How much memory a converted Value may take, relative to its size limit.
inline constexpr size_t kConversionMemoryFactor = 4;

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_JS_VALUE_H_
