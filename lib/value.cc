// The Value type of txfn/value.h: construction, access, order, size and the
// document limits. The encodings live in value_key.cc, value_binary.cc and
// value_json.cc.
#include "txfn/value.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fmt/format.h"
#include "lib/value_internal.h"

namespace txfn {

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kNull:
      return "null";
    case ValueType::kInt64:
      return "int64";
    case ValueType::kFloat64:
      return "float64";
    case ValueType::kBool:
      return "bool";
    case ValueType::kString:
      return "string";
    case ValueType::kBytes:
      return "bytes";
    case ValueType::kArray:
      return "array";
    case ValueType::kObject:
      return "object";
  }
  return "unknown";
}

Value Value::Int64(int64_t v) { return Value(Rep(std::in_place_index<1>, v)); }
Value Value::Float64(double v) { return Value(Rep(std::in_place_index<2>, v)); }
Value Value::Bool(bool v) { return Value(Rep(std::in_place_index<3>, v)); }
Value Value::String(std::string v) { return Value(Rep(std::in_place_index<4>, std::move(v))); }
Value Value::Bytes(std::string v) {
  return Value(Rep(std::in_place_index<5>, BytesRep{std::move(v)}));
}
Value Value::FromArray(Array v) {
  return Value(Rep(std::in_place_index<6>, std::make_shared<const Array>(std::move(v))));
}
Value Value::FromObject(Object v) {
  return Value(Rep(std::in_place_index<7>, std::make_shared<const Object>(std::move(v))));
}

namespace {

// An accessor called on a Value of another type: a bug of the caller's. Said plainly and
// stopped, in every build (reading the wrong alternative would crash later without a word).
[[noreturn]] void WrongType(const char* accessor, ValueType actual) {
  std::fprintf(stderr, "txfn::Value::%s() called on a %s value; check type() first\n", accessor,
               std::string(ValueTypeName(actual)).c_str());
  std::abort();
}

}  // namespace

int64_t Value::int64() const {
  if (!is_int64()) [[unlikely]]
    WrongType("int64", type());
  return *std::get_if<1>(&rep_);
}
double Value::float64() const {
  if (!is_float64()) [[unlikely]]
    WrongType("float64", type());
  return *std::get_if<2>(&rep_);
}
bool Value::boolean() const {
  if (!is_bool()) [[unlikely]]
    WrongType("boolean", type());
  return *std::get_if<3>(&rep_);
}
const std::string& Value::string() const {
  if (!is_string()) [[unlikely]]
    WrongType("string", type());
  return *std::get_if<4>(&rep_);
}
const std::string& Value::bytes() const {
  if (!is_bytes()) [[unlikely]]
    WrongType("bytes", type());
  return std::get_if<5>(&rep_)->data;
}
const Value::Array& Value::array() const {
  if (!is_array()) [[unlikely]]
    WrongType("array", type());
  return **std::get_if<6>(&rep_);
}
const Value::Object& Value::object() const {
  if (!is_object()) [[unlikely]]
    WrongType("object", type());
  return **std::get_if<7>(&rep_);
}

const Value* Value::Find(std::string_view name) const {
  if (!is_object()) return nullptr;
  const Object& fields = object();
  auto it = fields.find(name);
  return it == fields.end() ? nullptr : &it->second;
}

const Value* Value::FindPath(std::string_view dotted_path) const {
  const Value* v = this;
  while (true) {
    size_t dot = dotted_path.find('.');
    v = v->Find(dotted_path.substr(0, dot));
    if (v == nullptr || dot == std::string_view::npos) return v;
    dotted_path.remove_prefix(dot + 1);
  }
}

std::string Value::DebugString() const { return ToJson(*this); }

std::string Value::HashKey() const { return EncodeKey(*this); }

namespace {

int Sign(int c) { return (c > 0) - (c < 0); }

template <typename T>
int Cmp(const T& a, const T& b) {
  return (b < a) - (a < b);
}

}  // namespace

int Compare(const Value& a, const Value& b) {
  size_t ta = a.rep_.index();
  size_t tb = b.rep_.index();
  if (ta != tb) return ta < tb ? -1 : 1;
  switch (static_cast<ValueType>(ta)) {
    case ValueType::kNull:
      return 0;
    case ValueType::kInt64:
      return Cmp(*std::get_if<1>(&a.rep_), *std::get_if<1>(&b.rep_));
    case ValueType::kFloat64:
      return Cmp(value_internal::OrderedFloatBits(*std::get_if<2>(&a.rep_)),
                 value_internal::OrderedFloatBits(*std::get_if<2>(&b.rep_)));
    case ValueType::kBool:
      return Cmp(*std::get_if<3>(&a.rep_), *std::get_if<3>(&b.rep_));
    case ValueType::kString:
      return Sign(std::get_if<4>(&a.rep_)->compare(*std::get_if<4>(&b.rep_)));
    case ValueType::kBytes:
      return Sign(std::get_if<5>(&a.rep_)->data.compare(std::get_if<5>(&b.rep_)->data));
    case ValueType::kArray: {
      const Value::Array& x = **std::get_if<6>(&a.rep_);
      const Value::Array& y = **std::get_if<6>(&b.rep_);
      if (&x == &y) return 0;
      size_t n = std::min(x.size(), y.size());
      for (size_t i = 0; i < n; ++i) {
        if (int c = Compare(x[i], y[i]); c != 0) return c;
      }
      return Cmp(x.size(), y.size());
    }
    case ValueType::kObject: {
      const Value::Object& x = **std::get_if<7>(&a.rep_);
      const Value::Object& y = **std::get_if<7>(&b.rep_);
      if (&x == &y) return 0;
      auto i = x.begin();
      auto j = y.begin();
      for (; i != x.end() && j != y.end(); ++i, ++j) {
        if (int c = i->first.compare(j->first); c != 0) return Sign(c);
        if (int c = Compare(i->second, j->second); c != 0) return c;
      }
      return (i != x.end()) - (j != y.end());
    }
  }
  return 0;
}

// ---- Documents -------------------------------------------------------------------

bool IsValidFieldName(std::string_view name, const DocumentLimits& limits) {
  if (name.empty() || name.size() > limits.max_field_name_bytes) return false;
  if (name[0] == '_' || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

namespace {

// One step of the path from the document to the value being checked. Kept as
// views so the walk allocates nothing unless it reports an error.
struct PathStep {
  std::string_view field;  // when !is_index
  size_t index = 0;        // when is_index
  bool is_index = false;
};

std::string RenderPath(const std::vector<PathStep>& path) {
  if (path.empty()) return "(document)";
  std::string out;
  for (const PathStep& step : path) {
    if (step.is_index) {
      fmt::format_to(std::back_inserter(out), "[{}]", step.index);
    } else {
      if (!out.empty()) out.push_back('.');
      out.append(step.field);
    }
  }
  return out;
}

// Renders a field name for an error message, escaping what a log would garble. At most
// 64 bytes of it: an error quotes little of a tenant's data (a 1 MB name was quoted whole).
std::string QuoteName(std::string_view name) {
  constexpr size_t kMaxQuoted = 64;
  std::string out = "\"";
  for (unsigned char c : name.substr(0, kMaxQuoted)) {
    if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') {
      fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (name.size() > kMaxQuoted)
    fmt::format_to(std::back_inserter(out), "... ({} bytes)", name.size());
  return out;
}

bool IsSystemField(std::string_view name) { return name == "_id" || name == "_creationTime"; }

size_t SystemFieldsIn(const Value::Object& fields) {
  return fields.count("_id") + fields.count("_creationTime");
}

class DocumentValidator {
 public:
  explicit DocumentValidator(const DocumentLimits& limits) : limits_(limits) {}

  absl::Status Check(const Value& v, int depth) {
    if (v.is_array()) {
      if (depth > limits_.max_nesting_depth) return DepthError(depth);
      const Value::Array& elements = v.array();
      if (elements.size() > limits_.max_array_length) {
        return absl::InvalidArgumentError(
            fmt::format("array at {} has {} elements, over the limit of {} (max_array_length)",
                        RenderPath(path_), elements.size(), limits_.max_array_length));
      }
      for (size_t i = 0; i < elements.size(); ++i) {
        path_.push_back({.field = {}, .index = i, .is_index = true});
        absl::Status s = Check(elements[i], depth + 1);
        path_.pop_back();
        if (!s.ok()) return s;
      }
    } else if (v.is_object()) {
      if (depth > limits_.max_nesting_depth) return DepthError(depth);
      const Value::Object& fields = v.object();
      // The system fields are the store's, not the user's: they do not count.
      const size_t user_fields = fields.size() - (depth == 1 ? SystemFieldsIn(fields) : 0);
      if (user_fields > limits_.max_fields_per_object) {
        return absl::InvalidArgumentError(
            fmt::format("object at {} has {} fields, over the limit of {} (max_fields_per_object)",
                        RenderPath(path_), user_fields, limits_.max_fields_per_object));
      }
      for (const auto& [name, field] : fields) {
        const bool system = depth == 1 && IsSystemField(name);
        if (!system && !IsValidFieldName(name, limits_)) {
          return absl::InvalidArgumentError(fmt::format(
              "invalid field name {} in {}: a field name must be a non-empty identifier of "
              "[A-Za-z0-9_], at most {} bytes (max_field_name_bytes), not starting with a "
              "digit, '$' or '_'",
              QuoteName(name), RenderPath(path_), limits_.max_field_name_bytes));
        }
        path_.push_back({.field = name, .index = 0, .is_index = false});
        absl::Status s = Check(field, depth + 1);
        path_.pop_back();
        if (!s.ok()) return s;
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status DepthError(int depth) const {
    return absl::InvalidArgumentError(
        fmt::format("value at {} is nested {} deep, over the limit of {} (max_nesting_depth)",
                    RenderPath(path_), depth, limits_.max_nesting_depth));
  }

  const DocumentLimits& limits_;
  std::vector<PathStep> path_;
};

}  // namespace

absl::Status ValidateDocument(const Value& doc, const DocumentLimits& limits) {
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        fmt::format("a document must be an object, not {}", ValueTypeName(doc.type())));
  }
  size_t size = doc.ByteSize();
  if (size > limits.max_size_bytes) {
    return absl::InvalidArgumentError(
        fmt::format("document is {} bytes, over the limit of {} (max_size_bytes)", size,
                    limits.max_size_bytes));
  }
  DocumentValidator validator(limits);
  return validator.Check(doc, 1);
}

std::ostream& operator<<(std::ostream& os, const Value& v) { return os << ToJson(v); }

}  // namespace txfn
