// InitializeV8: one v8::Platform per process, initialised once.
//
// The only process-wide state of txfn's V8 layer is the function-local static
// below (thread-safe initialisation by the language). V8 cannot be
// re-initialised after V8::Dispose, so the platform lives until the process
// exits; it is deliberately never destroyed (a static destructor could run
// while another static still uses an isolate).
#include "lib/v8/platform.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "lib/v8/page_caching_platform.h"
#include "libplatform/libplatform.h"
#include "txfn/internal/strings.h"
#include "txfn/v8_platform.h"
#include "unicode/ucal.h"
#include "unicode/uloc.h"
#include "unicode/utypes.h"
#include "v8-initialization.h"
#include "v8-platform.h"
#include "v8-version.h"

namespace txfn {
namespace {

struct V8Process {
  v8::Platform* platform = nullptr;  // the one V8 uses
  // Created here: libplatform's default platform, wrapped by `platform`
  // (PumpMessageLoop needs the inner one). Null for a host's platform.
  // Also set exactly when txfn set --hash-seed.
  v8::Platform* default_platform = nullptr;
  // Why ICU's defaults could not be pinned (OK when they were).
  absl::Status icu_defaults;
};

// Tenant code must not see the host's time zone or locale. V8 takes local time (Date's
// getHours and toString, Date.parse and `new Date(y, m, d)` without an offset, getTimezoneOffset,
// Intl's default time zone) and the default locale (Intl's, toLocaleString, toLocaleUpperCase,
// the zone's name in toString) from ICU's process-wide defaults, which ICU reads from TZ and
// LANG: the same mutation wrote different values on two hosts (under TZ=Pacific/Chatham,
// LANG=tr_TR.UTF-8 `new Date(2026, 6, 1)` was 12 h 45 min earlier and 'i' upper-cased to
// dotted 'İ'), and told the tenant where the host is. So every runner of the process sees UTC
// and en-US, pinned before the first isolate (V8 reads them when an isolate first needs them,
// and each isolate keeps its default locale). ICU's defaults belong to the process: a host
// that uses ICU itself sees them too (v8_platform.h says so).
absl::Status PinIcuDefaults() {
  UErrorCode status = U_ZERO_ERROR;
  ucal_setDefaultTimeZone(u"UTC", &status);
  if (U_FAILURE(status)) {
    return absl::InternalError(
        internal::StrCat("ICU refused UTC as the default time zone: ", u_errorName(status)));
  }
  uloc_setDefault("en_US", &status);
  if (U_FAILURE(status)) {
    return absl::InternalError(
        internal::StrCat("ICU refused en_US as the default locale: ", u_errorName(status)));
  }
  return absl::OkStatus();
}

// Freed V8 heap pages kept mapped for reuse (page_caching_platform.h): a few
// contexts' worth per worker is enough to take page faults off the path.
constexpr size_t kPageCacheBytes = 32 << 20;

// First caller decides: its host platform, or a default platform made here.
const V8Process& Process(v8::Platform* host_platform) {
  static const V8Process* const process = [host_platform] {
    auto* p = new V8Process;
    if (host_platform != nullptr) {
      // The host owns it and has initialised V8 with it.
      p->platform = host_platform;
      p->icu_defaults = PinIcuDefaults();
      return p;
    }
    // V8's own background threads (GC, compilation): a few are enough; the
    // scheduler's workers run the JS.
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    const int background = hw > 4 ? 4 : (hw > 1 ? hw : 1);
    p->default_platform = v8::platform::NewDefaultPlatform(background).release();
    p->platform = internal::NewPageCachingPlatform(p->default_platform, kPageCacheBytes).release();
    // Tenant code gets no WebAssembly (nor asm.js compiled to it): the
    // runtime is a sandbox for queries and mutations, and V8 would otherwise
    // build the WebAssembly API in every fresh context (~15% of a request).
    // A host that wants it initialises V8 with its own platform and flags.
    v8::V8::SetFlagsFromString("--no-expose-wasm --no-validate-asm");
    // No shared memory either: with it, Atomics.wait/waitAsync could block a
    // worker without using CPU or run code after a request (the runner also
    // removes the constructor per context, for hosts' platforms).
    v8::V8::SetFlagsFromString("--no-harmony-sharedarraybuffer");
    // Unoptimised code checks for termination only when its interrupt budget (bytecode
    // executed) runs out, every ~132 KB by default: a loop whose body is one costly step
    // (`a === b` of two 8 Mi-character look-alikes, 2.4 ms) ran 11 s past its CPU limit, 4,600
    // steps, abandoned. A budget of 8 KB checks 16.5 times as often (that loop: 0.3 s past
    // it). TurboFan's main threshold counts budgets, so it is scaled to match (3 -> 50 budgets
    // before optimising, 1,100 -> 67 bytes of a function's size per extra budget); the
    // heuristics that act on one budget (a small stable function optimised at its first, OSR
    // urgency) now act 16.5 times as soon. BM_RunQuery* and BM_RawV8ArrayBuiltins: within the
    // runs' noise (2026-12-06). The values are V8 10.2's (its defaults 135168, 3, 1100):
    // revisit them with another V8.
    static_assert(V8_MAJOR_VERSION == 10 && V8_MINOR_VERSION == 2,
                  "the interrupt budget and tiering flags below are scaled from V8 10.2's "
                  "defaults: scale them from this V8's");
    v8::V8::SetFlagsFromString(
        "--interrupt-budget=8192 --ticks-before-optimization=50 "
        "--bytecode-size-allowance-per-tick=67");
    // One random hash seed for every isolate of the process, fixed before
    // the first one: V8 would otherwise draw a new one whenever its shared
    // read-only heap is rebuilt (after the last isolate died), and the
    // runner's snapshot, deserialised without rehashing (runner_core.cc),
    // must hash with the seed it was made with. Still random per process, so
    // hash flooding cannot be planned.
    // 63 random bits: V8 parses the flag as a signed 64-bit number and
    // ignores a larger value (0 would mean "random per heap" again).
    uint64_t seed = 0;
    absl::BitGen bits;
    while (seed == 0) seed = absl::Uniform<uint64_t>(bits) >> 1;
    const std::string seed_flag = internal::StrCat("--hash-seed=", seed);
    v8::V8::SetFlagsFromString(seed_flag.c_str());
    v8::V8::InitializeICU();
    p->icu_defaults = PinIcuDefaults();
    v8::V8::InitializePlatform(p->platform);
    v8::V8::Initialize();
    return p;
  }();
  return *process;
}

}  // namespace

absl::Status InitializeV8(v8::Platform* host_platform) {
  const V8Process& p = Process(host_platform);
  if (host_platform != nullptr && host_platform != p.platform) {
    return absl::FailedPreconditionError(
        "V8 was already initialised with another platform; InitializeV8(host) must come first");
  }
  return p.icu_defaults;
}

v8::Platform* V8Platform() { return Process(nullptr).platform; }

namespace internal {
v8::Platform* V8DefaultPlatform() { return Process(nullptr).default_platform; }
bool V8HashSeedIsFixed() { return Process(nullptr).default_platform != nullptr; }
std::optional<PageCacheStats> V8PageCacheStats() {
  const V8Process& p = Process(nullptr);
  if (p.default_platform == nullptr) return std::nullopt;
  return GetPageCacheStats(p.platform);
}
}  // namespace internal

}  // namespace txfn
