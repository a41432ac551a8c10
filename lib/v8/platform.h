// lib/v8/platform.h — internal access to the process's V8 platform.
#ifndef TXFN_LIB_V8_PLATFORM_H_
#define TXFN_LIB_V8_PLATFORM_H_

#include <optional>

#include "lib/v8/page_caching_platform.h"

namespace v8 {
class Platform;
}  // namespace v8

namespace txfn::internal {

// When txfn created the platform: the libplatform default platform inside it
// (for v8::platform::PumpMessageLoop and NotifyIsolateShutdown). Null for a
// host's platform. Initialises V8 like InitializeV8() if not done yet.
v8::Platform* V8DefaultPlatform();

// Whether every isolate of the process hashes with one seed fixed at V8's
// initialisation (txfn's own platform sets --hash-seed; a host's may not).
bool V8HashSeedIsFixed();

// The page cache of txfn's own platform; nullopt with a host's platform.
std::optional<PageCacheStats> V8PageCacheStats();

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_PLATFORM_H_
