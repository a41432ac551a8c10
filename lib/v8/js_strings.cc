#include "lib/v8/js_strings.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "lib/utf8.h"
#include "txfn/internal/strings.h"
#include "v8-context.h"

namespace txfn::internal {
namespace {

constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // …

}  // namespace

v8::MaybeLocal<v8::String> NewString(v8::Isolate* isolate, std::string_view s) {
  if (s.size() > static_cast<size_t>(v8::String::kMaxLength)) return {};
  return v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()));
}

v8::Local<v8::String> MessageString(v8::Isolate* isolate, std::string_view s) {
  std::string cut;
  if (s.size() > kMaxJsMessageBytes) {
    cut = StrCat(s.substr(0, Utf8Boundary(s, kMaxJsMessageBytes)), kEllipsis);
    s = cut;
  }
  v8::Local<v8::String> out;
  if (v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal,
                              static_cast<int>(s.size()))
          .ToLocal(&out)) {
    return out;
  }
  return v8::String::Empty(isolate);
}

std::string Utf8Prefix(v8::Isolate* isolate, v8::Local<v8::String> s, size_t max_bytes) {
  // A character is at most 3 UTF-8 bytes (a surrogate pair, 2 characters, is 4).
  const size_t length = static_cast<size_t>(s->Length());
  // Reading any part of a string built by concatenation makes V8 flatten all
  // of it: one allocation of up to 1 GiB, past any heap limit.
  if (length > kMaxReadableChars) return StrCat("(a string of ", length, " characters)");
  const bool whole = length * 3 <= max_bytes;
  const size_t capacity = whole ? length * 3 : max_bytes + 4;
  std::string out(capacity, '\0');
  int chars_written = 0;
  const int written =
      s->WriteUtf8(isolate, out.data(), static_cast<int>(capacity), &chars_written,
                   v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
  out.resize(static_cast<size_t>(std::max(written, 0)));
  if (static_cast<size_t>(chars_written) < length || out.size() > max_bytes) {
    out.resize(Utf8Boundary(out, std::min(out.size(), max_bytes)));
    out += kEllipsis;
  }
  return out;
}

std::optional<int> LoneSurrogateAt(v8::Isolate* isolate, v8::Local<v8::String> s) {
  if (s->IsOneByte()) return std::nullopt;
  std::vector<uint16_t> units(static_cast<size_t>(s->Length()));
  s->Write(isolate, units.data(), 0, static_cast<int>(units.size()),
           v8::String::NO_NULL_TERMINATION);
  for (size_t i = 0; i < units.size(); ++i) {
    const uint16_t u = units[i];
    if (u < 0xD800 || u > 0xDFFF) continue;
    if (u <= 0xDBFF && i + 1 < units.size() && units[i + 1] >= 0xDC00 && units[i + 1] <= 0xDFFF) {
      ++i;  // a pair
      continue;
    }
    return static_cast<int>(i);
  }
  return std::nullopt;
}

std::optional<int> LoneSurrogateIn(v8::Isolate* isolate, v8::Local<v8::String> s,
                                   std::string_view utf8) {
  constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD
  if (utf8.find(kReplacementCharacter) == std::string_view::npos) return std::nullopt;
  return LoneSurrogateAt(isolate, s);
}

namespace {

// The `name` an error inherits from a hardened context's override accessor
// (harden_js.h), read without running anything; "" when it has none. V8's
// side-effect-free rendering reads data properties only, so it would leave
// such a name out.
std::string OverriddenErrorName(v8::Isolate* isolate, v8::Local<v8::Object> error) {
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::String> key = MessageString(isolate, "name");
  v8::Local<v8::Private> original =
      v8::Private::ForApi(isolate, MessageString(isolate, kOriginalValueKey));
  v8::Local<v8::Value> o = error;
  // Bounded: a tenant's chain of its own prototypes ends in data or a proxy.
  for (int depth = 0; depth < 64 && o->IsObject() && !o->IsProxy(); ++depth) {
    v8::Local<v8::Object> obj = o.As<v8::Object>();
    if (obj->HasRealNamedProperty(context, key).FromMaybe(false)) {
      if (!obj->HasRealNamedCallbackProperty(context, key).FromMaybe(true)) {
        return "";  // a data property: V8's rendering has it
      }
      v8::Local<v8::Value> descriptor;
      v8::Local<v8::Value> getter;
      v8::Local<v8::Value> value;
      if (!obj->GetOwnPropertyDescriptor(context, key).ToLocal(&descriptor) ||
          !descriptor->IsObject() ||
          !descriptor.As<v8::Object>()
               ->Get(context, MessageString(isolate, "get"))
               .ToLocal(&getter) ||
          !getter->IsFunction() ||
          !getter.As<v8::Object>()->GetPrivate(context, original).ToLocal(&value) ||
          !value->IsString()) {
        return "";
      }
      return Utf8Prefix(isolate, value.As<v8::String>(), kQuoteBytes);
    }
    o = obj->GetPrototype();
  }
  return "";
}

}  // namespace

std::string DescribeValue(v8::Isolate* isolate, v8::Local<v8::Value> v, size_t max_bytes) {
  if (v.IsEmpty()) return "(nothing)";
  if (v->IsString()) return StrCat("\"", Utf8Prefix(isolate, v.As<v8::String>(), max_bytes), "\"");
  // ToDetailString uses V8's NoSideEffectsToString: no user code runs.
  v8::Local<v8::String> detail;
  if (!v->ToDetailString(isolate->GetCurrentContext()).ToLocal(&detail)) return "(a value)";
  std::string text = Utf8Prefix(isolate, detail, max_bytes);
  if (v->IsNativeError()) {
    const std::string name = OverriddenErrorName(isolate, v.As<v8::Object>());
    if (!name.empty()) {
      text = text.empty() ? name : StrCat(name, ": ", text);
      if (text.size() > max_bytes) text.resize(Utf8Boundary(text, max_bytes));
    }
  }
  return text;
}

std::string Quote(std::string_view s) {
  if (s.size() <= kQuoteBytes) return StrCat("\"", s, "\"");
  return StrCat("\"", s.substr(0, Utf8Boundary(s, kQuoteBytes)), kEllipsis, "\" (", s.size(),
                " bytes)");
}

}  // namespace txfn::internal
