#include "lib/v8/js_value.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/v8/js_strings.h"
#include "txfn/errors.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {
namespace {

absl::StatusOr<v8::Local<v8::String>> NewString(v8::Isolate* isolate, const std::string& s) {
  if (s.size() > static_cast<size_t>(v8::String::kMaxLength)) {
    return absl::InvalidArgumentError("string too long for JavaScript");
  }
  v8::Local<v8::String> out;
  if (!v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal,
                               static_cast<int>(s.size()))
           .ToLocal(&out)) {
    return absl::InvalidArgumentError("string too long for JavaScript");
  }
  return out;
}

// Frees a backing store NewBuffer made, through the allocator it came from.
void FreeWithAllocator(void* data, size_t length, void* allocator) {
  static_cast<v8::ArrayBuffer::Allocator*>(allocator)->Free(data, length);
}

// An ArrayBuffer holding `bytes`, its memory from the isolate's allocator. Not
// v8::ArrayBuffer::New: when the allocator refuses (txfn's counts buffers
// against the isolate's array buffer limit), V8 10.2 ends the process there.
// Refused here, after a full GC as V8 itself does for `new ArrayBuffer`, the
// conversion fails (the allocator counted the refusal: the request's status
// names the array buffer limit).
absl::StatusOr<v8::Local<v8::ArrayBuffer>> NewBuffer(v8::Isolate* isolate,
                                                     const std::string& bytes) {
  if (bytes.empty()) return v8::ArrayBuffer::New(isolate, 0);
  v8::ArrayBuffer::Allocator* allocator = isolate->GetArrayBufferAllocator();
  void* data = allocator->AllocateUninitialized(bytes.size());
  if (data == nullptr) {
    isolate->LowMemoryNotification();
    data = allocator->AllocateUninitialized(bytes.size());
  }
  if (data == nullptr) {
    return WithLimit(
        absl::ResourceExhaustedError(StrCat("no memory for an ArrayBuffer of ", bytes.size(),
                                            " bytes (array buffer memory limit)")),
        Limit::kArrayBufferMemory);
  }
  std::memcpy(data, bytes.data(), bytes.size());
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(data, bytes.size(), &FreeWithAllocator, allocator);
  return v8::ArrayBuffer::New(isolate, std::move(store));
}

absl::StatusOr<v8::Local<v8::Value>> ToJsImpl(v8::Isolate* isolate, v8::Local<v8::Context> context,
                                              const Value& value) {
  switch (value.type()) {
    case ValueType::kNull:
      return v8::Local<v8::Value>(v8::Null(isolate));
    case ValueType::kInt64:
      return v8::Local<v8::Value>(v8::BigInt::New(isolate, value.int64()));
    case ValueType::kFloat64:
      return v8::Local<v8::Value>(v8::Number::New(isolate, value.float64()));
    case ValueType::kBool:
      return v8::Local<v8::Value>(v8::Boolean::New(isolate, value.boolean()));
    case ValueType::kString: {
      auto s = NewString(isolate, value.string());
      if (!s.ok()) return s.status();
      return v8::Local<v8::Value>(*s);
    }
    case ValueType::kBytes: {
      absl::StatusOr<v8::Local<v8::ArrayBuffer>> buffer = NewBuffer(isolate, value.bytes());
      if (!buffer.ok()) return buffer.status();
      return v8::Local<v8::Value>(*buffer);
    }
    case ValueType::kArray: {
      const Value::Array& a = value.array();
      std::vector<v8::Local<v8::Value>> elements;
      elements.reserve(a.size());
      for (const Value& e : a) {
        auto js = ToJsImpl(isolate, context, e);
        if (!js.ok()) return js.status();
        elements.push_back(*js);
      }
      return v8::Local<v8::Value>(v8::Array::New(isolate, elements.data(), elements.size()));
    }
    case ValueType::kObject: {
      const Value::Object& o = value.object();
      std::vector<v8::Local<v8::Name>> names;
      std::vector<v8::Local<v8::Value>> values;
      names.reserve(o.size());
      values.reserve(o.size());
      for (const auto& [name, field] : o) {
        v8::Local<v8::String> key;
        if (!v8::String::NewFromUtf8(isolate, name.data(), v8::NewStringType::kInternalized,
                                     static_cast<int>(name.size()))
                 .ToLocal(&key)) {
          return absl::InvalidArgumentError("field name too long for JavaScript");
        }
        auto js = ToJsImpl(isolate, context, field);
        if (!js.ok()) return js.status();
        names.push_back(key);
        values.push_back(*js);
      }
      v8::Local<v8::Object> obj = v8::Object::New(isolate, v8::Object::New(isolate)->GetPrototype(),
                                                  names.data(), values.data(), names.size());
      return v8::Local<v8::Value>(obj);
    }
  }
  return absl::InternalError("unknown value type");
}

class Converter {
 public:
  Converter(v8::Local<v8::Context> context, size_t max_bytes, const IsolateLease* lease,
            std::vector<std::string>* undefined_fields)
      : isolate_(context->GetIsolate()),
        context_(context),
        max_bytes_(max_bytes),
        max_memory_(max_bytes > SIZE_MAX / kConversionMemoryFactor
                        ? SIZE_MAX
                        : max_bytes * kConversionMemoryFactor),
        lease_(lease),
        undefined_fields_(undefined_fields) {}

  absl::StatusOr<Value> Convert(v8::Local<v8::Value> js) {
    {
      // In the caller's handle scope: ConvertImpl's nested scopes would free it.
      v8::Context::Scope scope(context_);
      object_prototype_ = v8::Object::New(isolate_)->GetPrototype();
    }
    v8::TryCatch try_catch(isolate_);
    absl::StatusOr<Value> out = ConvertImpl(js, 0);
    if (try_catch.HasTerminated()) {
      try_catch.ReThrow();
      return Stopped();
    }
    return out;
  }

 private:
  static absl::Status Stopped() {
    return absl::CancelledError("JavaScript execution was terminated");
  }

  std::string PathString() const {
    std::string out;
    for (const std::string& p : path_) out += p;
    if (out.size() > 256) out = StrCat(out.substr(0, 256), "...");
    return out.empty() ? std::string("(top level)") : out;
  }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(StrCat("cannot convert the JavaScript value at `",
                                             PathString(), "` to a txfn Value: ", what));
  }

  // Counts `bytes` of encoded size for one value node; also checks, every
  // few nodes, whether the request was stopped meanwhile.
  absl::Status Charge(size_t bytes) {
    bytes_ += bytes;
    memory_ += std::max(bytes, sizeof(Value));
    if (bytes_ > max_bytes_) {
      return WithLimit(absl::ResourceExhaustedError(
                           StrCat("JavaScript value exceeds the size limit of ", max_bytes_,
                                  " bytes (max_value_bytes) at `", PathString(), "`")),
                       Limit::kValueSize);
    }
    if (memory_ > max_memory_) {
      return WithLimit(
          absl::ResourceExhaustedError(StrCat(
              "JavaScript value has too many elements to convert within ", max_memory_, " bytes (",
              kConversionMemoryFactor, " x max_value_bytes) at `", PathString(), "`")),
          Limit::kValueSize);
    }
    if (++nodes_ % 256 == 0 &&
        (isolate_->IsExecutionTerminating() || (lease_ != nullptr && lease_->limit_exceeded()))) {
      return Stopped();
    }
    return absl::OkStatus();
  }

  // The message of the exception a getter threw, if any (no user code runs).
  std::string ExceptionText(v8::TryCatch& tc) {
    if (!tc.HasCaught()) return "unknown error";
    std::string text = DescribeValue(isolate_, tc.Exception(), kQuoteBytes * 4);
    tc.Reset();
    return text;
  }

  absl::StatusOr<std::string> Utf8(v8::Local<v8::String> s) {
    TXFN_RETURN_IF_ERROR(Charge(static_cast<size_t>(s->Length()) + 1));
    std::string out;
    out.resize(static_cast<size_t>(s->Utf8Length(isolate_)));
    s->WriteUtf8(isolate_, out.data(), static_cast<int>(out.size()), nullptr,
                 v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
    // A lone surrogate came out as U+FFFD: two different strings (or field
    // names) would be stored as one. Refused.
    if (std::optional<int> at = LoneSurrogateIn(isolate_, s, out)) {
      return Error(StrCat("a string with a lone surrogate at index ", *at,
                          " (not valid Unicode: it cannot be stored as text; use bytes)"));
    }
    return out;
  }

  // A failed read: Cancelled when terminating, else the getter's error.
  absl::Status ReadFailed(v8::TryCatch& tc, std::string_view what) {
    if (tc.HasTerminated() || isolate_->IsExecutionTerminating()) {
      tc.ReThrow();
      return Stopped();
    }
    return Error(StrCat(what, " threw: ", ExceptionText(tc)));
  }

  absl::StatusOr<Value> ConvertImpl(v8::Local<v8::Value> js, int depth) {
    if (js->IsNull() || js->IsUndefined()) {
      TXFN_RETURN_IF_ERROR(Charge(1));
      return Value::Null();
    }
    if (js->IsBoolean()) {
      TXFN_RETURN_IF_ERROR(Charge(1));
      return Value::Bool(js->IsTrue());
    }
    if (js->IsNumber()) {
      TXFN_RETURN_IF_ERROR(Charge(9));
      return Value::Float64(js.As<v8::Number>()->Value());
    }
    if (js->IsBigInt()) {
      TXFN_RETURN_IF_ERROR(Charge(9));
      bool lossless = false;
      int64_t v = js.As<v8::BigInt>()->Int64Value(&lossless);
      if (!lossless) return Error("BigInt outside the int64 range");
      return Value::Int64(v);
    }
    if (js->IsString()) {
      auto s = Utf8(js.As<v8::String>());
      if (!s.ok()) return s.status();
      return Value::String(*std::move(s));
    }
    if (js->IsSymbol()) return Error("a symbol");
    if (js->IsFunction()) return Error("a function");
    if (js->IsArrayBuffer()) {
      auto store = js.As<v8::ArrayBuffer>()->GetBackingStore();
      TXFN_RETURN_IF_ERROR(Charge(store->ByteLength() + 1));
      return Value::Bytes(
          std::string(static_cast<const char*>(store->Data()), store->ByteLength()));
    }
    if (js->IsArrayBufferView()) {
      auto view = js.As<v8::ArrayBufferView>();
      TXFN_RETURN_IF_ERROR(Charge(view->ByteLength() + 1));
      std::string bytes(view->ByteLength(), '\0');
      if (!bytes.empty()) view->CopyContents(bytes.data(), bytes.size());
      return Value::Bytes(std::move(bytes));
    }
    if (!js->IsObject()) return Error("an unsupported type");
    v8::Local<v8::Object> obj = js.As<v8::Object>();
    if (depth >= kMaxDecodeDepth) {
      return Error(StrCat("nested deeper than ", kMaxDecodeDepth, " levels"));
    }
    for (const v8::Local<v8::Object>& open : stack_) {
      if (open->StrictEquals(obj)) return Error("a cyclic reference");
    }
    if (js->IsProxy()) return Error("a Proxy");
    if (js->IsDate()) return Error("a Date (pass a number)");
    if (js->IsMap() || js->IsSet() || js->IsWeakMap() || js->IsWeakSet()) {
      return Error("a Map or Set");
    }
    if (js->IsRegExp()) return Error("a RegExp");
    if (js->IsPromise()) return Error("a Promise (did you forget `await`?)");
    if (js->IsSharedArrayBuffer()) return Error("a SharedArrayBuffer");
    // Objects whose state lives in internal slots, not in own properties:
    // converted property by property they would become {} and lose it.
    if (js->IsNumberObject() || js->IsStringObject() || js->IsBooleanObject() ||
        js->IsBigIntObject() || js->IsSymbolObject()) {
      return Error("a boxed primitive (pass the primitive)");
    }
    if (js->IsNativeError()) return Error("an Error (pass its message)");
    if (js->IsGeneratorObject() || js->IsMapIterator() || js->IsSetIterator()) {
      return Error("an iterator (pass an array)");
    }
    if (js->IsModuleNamespaceObject()) return Error("a module namespace");
    if (!js->IsArray() && !IsPlain(obj)) {
      // Its methods and prototype would be lost, and what is left is often
      // internal state (a ctx.db query returned without .collect()).
      const std::string constructor = Utf8Prefix(isolate_, obj->GetConstructorName(), 64);
      if (constructor == "Query") {  // txfn's own, or one named so: either way the hint fits
        return Error(
            "a ctx.db.query(...), not its documents (end it with .collect(), .take(n), "
            ".first(), .unique() or .paginate(...), and await that)");
      }
      return Error(StrCat("an instance of ", constructor,
                          " (pass a plain object: {...} or Object.create(null))"));
    }
    stack_.push_back(obj);
    absl::StatusOr<Value> out =
        js->IsArray() ? ConvertArray(js.As<v8::Array>(), depth) : ConvertObject(obj, depth);
    stack_.pop_back();
    return out;
  }

  // Whether `obj`'s prototype is null or this context's Object.prototype.
  bool IsPlain(v8::Local<v8::Object> obj) {
    v8::Local<v8::Value> proto = obj->GetPrototype();
    if (proto->IsNull()) return true;
    return proto->StrictEquals(object_prototype_);
  }

  absl::StatusOr<Value> ConvertArray(v8::Local<v8::Array> array, int depth) {
    uint32_t length = array->Length();
    // Every element counts at least a byte: a huge sparse array is refused
    // before its holes are walked.
    TXFN_RETURN_IF_ERROR(Charge(static_cast<size_t>(length) + 2));
    Value::Array out;
    for (uint32_t i = 0; i < length; ++i) {
      v8::HandleScope scope(isolate_);  // an element's handles die with it
      path_.push_back(StrCat("[", i, "]"));
      v8::TryCatch tc(isolate_);
      v8::Local<v8::Value> element;
      if (!array->Get(context_, i).ToLocal(&element)) return ReadFailed(tc, "reading it");
      auto v = ConvertImpl(element, depth + 1);
      if (!v.ok()) return v.status();
      path_.pop_back();
      out.push_back(*std::move(v));
    }
    return Value::FromArray(std::move(out));
  }

  absl::StatusOr<Value> ConvertObject(v8::Local<v8::Object> obj, int depth) {
    v8::Local<v8::Array> names;
    {
      v8::TryCatch tc(isolate_);
      if (!obj->GetOwnPropertyNames(
                  context_, static_cast<v8::PropertyFilter>(v8::ONLY_ENUMERABLE | v8::SKIP_SYMBOLS),
                  v8::KeyConversionMode::kConvertToString)
               .ToLocal(&names)) {
        return ReadFailed(tc, "listing its fields");
      }
    }
    Value::Object out;
    uint32_t n = names->Length();
    TXFN_RETURN_IF_ERROR(Charge(2));
    for (uint32_t i = 0; i < n; ++i) {
      v8::HandleScope scope(isolate_);
      v8::Local<v8::Value> key;
      if (!names->Get(context_, i).ToLocal(&key) || !key->IsString()) continue;
      auto name = Utf8(key.As<v8::String>());
      if (!name.ok()) return name.status();
      path_.push_back(name->size() > 64 ? StrCat(".", name->substr(0, 64), "...")
                      : path_.empty()   ? *name
                                        : StrCat(".", *name));
      // JSON's tags ({"$int64": "5"}) are objects with such a name: a value that had one would
      // print as another value, or as JSON no parser takes.
      if (!name->empty() && (*name)[0] == '$') {
        return Error("field names starting with '$' are reserved");
      }
      v8::TryCatch tc(isolate_);
      v8::Local<v8::Value> field;
      if (!obj->Get(context_, key).ToLocal(&field)) return ReadFailed(tc, "reading it");
      if (field->IsUndefined()) {
        if (depth == 0 && undefined_fields_ != nullptr) undefined_fields_->push_back(*name);
        path_.pop_back();
        continue;
      }
      auto v = ConvertImpl(field, depth + 1);
      if (!v.ok()) return v.status();
      path_.pop_back();
      out.insert_or_assign(*std::move(name), *std::move(v));
    }
    return Value::FromObject(std::move(out));
  }

  v8::Isolate* isolate_;
  v8::Local<v8::Context> context_;
  const size_t max_bytes_;
  const size_t max_memory_;
  const IsolateLease* const lease_;
  std::vector<std::string>* const undefined_fields_;
  size_t bytes_ = 0;
  size_t memory_ = 0;
  uint64_t nodes_ = 0;
  std::vector<std::string> path_;
  std::vector<v8::Local<v8::Object>> stack_;
  v8::Local<v8::Value> object_prototype_;  // the context's Object.prototype (Convert)
};

}  // namespace

absl::StatusOr<v8::Local<v8::Value>> ToJs(v8::Local<v8::Context> context, const Value& value) {
  return ToJsImpl(context->GetIsolate(), context, value);
}

absl::StatusOr<Value> FromJs(v8::Local<v8::Context> context, v8::Local<v8::Value> js,
                             size_t max_bytes, const IsolateLease* lease,
                             std::vector<std::string>* undefined_fields) {
  return Converter(context, max_bytes, lease, undefined_fields).Convert(js);
}

}  // namespace txfn::internal
