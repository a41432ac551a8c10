// Fuzzes txfn/wire.h's decoders: any input either fails cleanly, or decodes to a message
// whose re-encoding decodes to the same thing (the codec round-trips what it accepts).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "txfn/wire.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "wire_fuzzer: %s\n", what);
    std::abort();
  }
}

bool SameValue(const txfn::Value& a, const txfn::Value& b) {
  return txfn::EncodeBinary(a) == txfn::EncodeBinary(b);  // bit for bit, NaN payloads too
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (absl::StatusOr<txfn::Value> v = txfn::DecodeWireValue(input); v.ok()) {
    absl::StatusOr<txfn::Value> again = txfn::DecodeWireValue(txfn::EncodeWireValue(*v));
    Check(again.ok() && SameValue(*v, *again), "Value round trip");
  }
  if (absl::StatusOr<txfn::RemoteRunRequest> r = txfn::DecodeRunRequest(input); r.ok()) {
    absl::StatusOr<txfn::RemoteRunRequest> again =
        txfn::DecodeRunRequest(txfn::EncodeRunRequest(*r));
    Check(again.ok() && again->tenant == r->tenant && again->run.function == r->run.function &&
              SameValue(again->run.args, r->run.args) && again->run.deadline == r->run.deadline &&
              again->snapshot_ts == r->snapshot_ts,
          "RunRequest round trip");
  }
  if (absl::StatusOr<txfn::RunResult> r = txfn::DecodeRunResult(input); r.ok()) {
    absl::StatusOr<txfn::RunResult> again = txfn::DecodeRunResult(txfn::EncodeRunResult(*r));
    Check(again.ok() && again->status == r->status && SameValue(again->value, r->value) &&
              again->commit == r->commit && again->logs == r->logs,
          "RunResult round trip");
  }
  return 0;
}
