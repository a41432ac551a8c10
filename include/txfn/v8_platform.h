// txfn/v8_platform.h — V8's process-wide initialisation, for hosts that embed
// V8 themselves.
//
// txfn initialises V8 on first use (IsolateScheduler::Create calls
// InitializeV8()), so most hosts never include this header. A host that
// already runs V8 (Node-style embedders, a host with its own v8::Platform)
// hands its platform over before creating any txfn part (with
// <libplatform/libplatform.h> and <v8.h> included):
//
//   std::unique_ptr<v8::Platform> platform = v8::platform::NewDefaultPlatform();
//   v8::V8::InitializePlatform(platform.get());
//   v8::V8::Initialize();
//   TXFN_RETURN_IF_ERROR(txfn::InitializeV8(platform.get()));  // before any scheduler
//   auto scheduler = txfn::IsolateScheduler::Create({.workers = 2});
//
// Thread safety: both functions are safe from any thread. Ownership: a host
// platform stays the host's; txfn never disposes of it, and it must outlive
// every txfn part that uses V8.
#ifndef TXFN_V8_PLATFORM_H_
#define TXFN_V8_PLATFORM_H_

#include "absl/status/status.h"

namespace v8 {
class Platform;
}  // namespace v8

namespace txfn {

// Initialises V8 once per process (thread-safe, idempotent). A host that
// already owns a v8::Platform (and has initialised V8) passes it here first;
// txfn then uses it and never disposes it. The platform txfn makes itself
// starts V8 with WebAssembly off (--no-expose-wasm --no-validate-asm): tenant
// code gets none, and fresh contexts skip building its API (~15% of a
// request). A host that wants it initialises V8 with its own platform and flags.
// It also sets --interrupt-budget=8192 --ticks-before-optimization=50
// --bytecode-size-allowance-per-tick=67 (V8 10.2; see lib/v8/platform.cc): without
// them a loop of costly steps (comparing long strings) runs seconds past its CPU
// limit before V8 looks; a host platform should set them too.
// With either platform it pins ICU's process-wide default time zone to UTC and locale to
// en-US (V8 reads local time and the default locale from ICU, which reads TZ and LANG): tenant
// code sees the same dates and formats on every host, and nothing of where the host is. A host
// that uses ICU itself (the same libicu) sees these defaults too.
// FailedPrecondition if V8 was already initialised here with another platform; Internal if
// ICU refused the defaults.
// IsolateScheduler::Create calls it, so only a host platform needs it spelled out.
[[nodiscard]] absl::Status InitializeV8(v8::Platform* host_platform = nullptr);

// The platform txfn uses (the host's, or the default one it created);
// initialises V8 like InitializeV8() if that was not called yet.
v8::Platform* V8Platform();

}  // namespace txfn

#endif  // TXFN_V8_PLATFORM_H_
