// Fuzzes DecodeKey/DecodeKeyPrefix: any input either fails cleanly or decodes
// to values that re-encode to exactly the input (the key encoding is
// canonical), and whose Compare order matches the order of their keys.
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
    std::fprintf(stderr, "value_key_fuzzer: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<txfn::Value> whole = txfn::DecodeKey(input);
  if (whole.ok()) {
    Check(txfn::EncodeKey(*whole) == input, "EncodeKey(DecodeKey(k)) != k");
    Check(txfn::Compare(*whole, *whole) == 0, "Compare(v, v) != 0");
    absl::StatusOr<txfn::Value> binary = txfn::DecodeBinary(txfn::EncodeBinary(*whole));
    Check(binary.ok() && *binary == *whole, "binary round trip");
    Check(whole->ByteSize() == txfn::EncodeBinary(*whole).size(), "ByteSize");
  }

  // The input as a tuple: decode values one after another.
  std::string_view rest = input;
  absl::StatusOr<txfn::Value> first = txfn::DecodeKeyPrefix(&rest);
  if (!first.ok()) {
    Check(rest.size() == input.size(), "failed decode moved the input");
    return 0;
  }
  std::string_view first_key = input.substr(0, input.size() - rest.size());
  Check(txfn::EncodeKey(*first) == first_key, "prefix re-encoding");
  std::string_view second_start = rest;
  absl::StatusOr<txfn::Value> second = txfn::DecodeKeyPrefix(&rest);
  if (second.ok()) {
    std::string_view second_key = second_start.substr(0, second_start.size() - rest.size());
    int c = txfn::Compare(*first, *second);
    int k = first_key.compare(second_key);
    Check((c > 0) - (c < 0) == (k > 0) - (k < 0), "key order != Compare order");
  }
  return 0;
}
