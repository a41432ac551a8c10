// lib/v8/platform.h — internal access to the process's V8 platform.
#ifndef TXFN_LIB_V8_PLATFORM_H_
#define TXFN_LIB_V8_PLATFORM_H_

namespace txfn::internal {

// True when txfn created the platform (a libplatform default platform, so
// v8::platform::PumpMessageLoop may be used on it); false for a host's.
// Initialises V8 like InitializeV8() if that was not called yet.
bool V8PlatformIsDefault();

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_PLATFORM_H_
