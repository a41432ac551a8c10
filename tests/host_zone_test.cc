// Tenant code sees UTC and en-US whatever the host's time zone and locale
// (lib/v8/platform.cc pins ICU's defaults): this process pretends to be in
// Chatham (UTC+12:45 in July) with a Turkish locale, where local time, the
// default locale's formats and 'i'.toLocaleUpperCase() all differ from UTC
// and en-US.
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/engine.h"

namespace txfn {
namespace {

// Set before main, so before anything in the process (ICU, libc) reads them.
const bool kHostIsFarAway = [] {
  setenv("TZ", "Pacific/Chatham", 1);
  setenv("LANG", "tr_TR.UTF-8", 1);
  setenv("LC_ALL", "tr_TR.UTF-8", 1);
  return true;
}();

constexpr const char* kProbe = R"JS(
import { query, mutation } from "txfn/server";
function probe() {
  const d = new Date(Date.UTC(2026, 6, 1, 12, 0, 0));
  return {
    offset: d.getTimezoneOffset(),
    hours: d.getHours(),
    date: d.getDate(),
    string: d.toString(),
    dateString: d.toDateString(),
    timeString: d.toTimeString(),
    concatenated: "" + d,
    parsedIso: Date.parse("2026-07-01T12:00:00"),
    parsedLegacy: Date.parse("Jul 1 2026 12:00"),
    constructed: new Date(2026, 6, 1, 12).getTime(),
    setHours: new Date(d.getTime()).setHours(0),
    zone: new Intl.DateTimeFormat().resolvedOptions().timeZone,
    locale: new Intl.DateTimeFormat().resolvedOptions().locale,
    fallbackLocale: new Intl.NumberFormat("zz").resolvedOptions().locale,
    collatorLocale: new Intl.Collator().resolvedOptions().locale,
    upper: "i".toLocaleUpperCase(),
    number: (1234.5).toLocaleString(),
    localeString: d.toLocaleString(),
  };
}
export const inQuery = query({ args: {}, handler: async () => probe() });
export const inMutation = mutation({ args: {}, handler: async () => probe() });
)JS";

constexpr const char* kUtcEnUs =
    R"J({"collatorLocale":"en-US","concatenated":"Wed Jul 01 2026 12:00:00 GMT+0000 )J"
    R"J((Coordinated Universal Time)","constructed":1782907200000,"date":1,)J"
    R"J("dateString":"Wed Jul 01 2026","fallbackLocale":"en-US","hours":12,)J"
    R"J("locale":"en-US","localeString":"7/1/2026, 12:00:00 PM","number":"1,234.5",)J"
    R"J("offset":0,"parsedIso":1782907200000,"parsedLegacy":1782907200000,)J"
    R"J("setHours":1.782864e+12,"string":"Wed Jul 01 2026 12:00:00 GMT+0000 )J"
    R"J((Coordinated Universal Time)","timeString":"12:00:00 GMT+0000 )J"
    R"J((Coordinated Universal Time)","upper":"I","zone":"UTC"})J";

// The premise: this process's host really is far away (libc sees Chatham).
TEST(HostZone, TheHostIsFarAway) {
  ASSERT_TRUE(kHostIsFarAway);
  std::time_t july = 1782907200;  // 2026-07-01T12:00:00Z
  std::tm local{};
  ASSERT_NE(localtime_r(&july, &local), nullptr);
  EXPECT_EQ(local.tm_gmtoff, (12 * 60 + 45) * 60);
}

TEST(HostZone, TenantCodeSeesUtcAndEnUs) {
  EngineOptions options;
  options.storage = EngineStorage::kMemory;
  options.scheduler.workers = 1;
  auto engine = Engine::Open(options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_TRUE((*engine)->CreateTenant("t").ok());
  ASSERT_TRUE((*engine)->DeployJson("t", {{"probe.js", kProbe}}, R"({"tables": {}})").ok());
  for (const char* fn : {"probe:inQuery", "probe:inMutation"}) {
    absl::StatusOr<CallResult> r = std::string(fn) == "probe:inQuery"
                                       ? (*engine)->Query("t", fn, Value::Null())
                                       : (*engine)->Mutation("t", fn, Value::Null());
    ASSERT_TRUE(r.ok()) << fn << ": " << r.status();
    EXPECT_EQ(ToJson(r->value), kUtcEnUs) << fn;
  }
}

}  // namespace
}  // namespace txfn
