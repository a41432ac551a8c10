// Fuzzes FromJson: any input either fails cleanly or parses to a value whose
// ToJson parses back to an equal value and is stable under another round.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "txfn/value.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "value_json_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<txfn::Value> v = txfn::FromJson(input);
  if (!v.ok()) return 0;
  std::string json = txfn::ToJson(*v);
  absl::StatusOr<txfn::Value> back = txfn::FromJson(json);
  Check(back.ok(), "FromJson(ToJson(v)) failed");
  Check(*back == *v, "FromJson(ToJson(v)) != v");
  Check(txfn::ToJson(*back) == json, "ToJson not stable");
  return 0;
}
