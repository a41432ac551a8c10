// Fuzzes DecodeBinary: any input either fails cleanly or decodes to a value
// that re-encodes to exactly the input (the binary encoding is canonical).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "txfn/value.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "value_binary_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<txfn::Value> v = txfn::DecodeBinary(input);
  if (!v.ok()) return 0;
  Check(txfn::EncodeBinary(*v) == input, "EncodeBinary(DecodeBinary(b)) != b");
  Check(v->ByteSize() == size, "ByteSize != encoded size");
  Check(txfn::Compare(*v, *v) == 0, "Compare(v, v) != 0");
  absl::StatusOr<txfn::Value> from_key = txfn::DecodeKey(txfn::EncodeKey(*v));
  Check(from_key.ok() && *from_key == *v, "key round trip");
  (void)txfn::ValidateDocument(*v);
  (void)v->DebugString();
  return 0;
}
