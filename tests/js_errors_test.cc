// ErrorTag / FromErrorTag: what an Error made by txfn carries through a throw (its status code
// and the limit it names), so that a limit caught by nobody still says which it was.
#include "lib/v8/js_errors.h"

#include <cstdint>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "txfn/errors.h"

namespace txfn::internal {
namespace {

TEST(ErrorTagTest, EveryCodeAndLimitSurviveTheTrip) {
  for (int code = 1; code <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++code) {
    const absl::Status plain(static_cast<absl::StatusCode>(code), "m");
    const absl::Status back = FromErrorTag(ErrorTag(plain), "again");
    EXPECT_EQ(back.code(), plain.code());
    EXPECT_EQ(back.message(), "again");
    EXPECT_EQ(ExceededLimit(back), std::nullopt);
  }
  for (int limit = 0; limit <= static_cast<int>(Limit::kSandbox); ++limit) {
    const absl::Status limited =
        WithLimit(absl::ResourceExhaustedError("m"), static_cast<Limit>(limit));
    const absl::Status back = FromErrorTag(ErrorTag(limited), "m");
    EXPECT_TRUE(absl::IsResourceExhausted(back)) << back;
    EXPECT_EQ(ExceededLimit(back), static_cast<Limit>(limit)) << LimitName(Limit(limit));
  }
}

TEST(ErrorTagTest, AnythingElseIsUnknown) {
  for (int32_t tag : {0, -1, 17, 255, (12 << 8) | 8, (99 << 8) | 8, INT32_MIN, INT32_MAX}) {
    const absl::Status status = FromErrorTag(tag, "what");
    EXPECT_TRUE(absl::IsUnknown(status)) << tag << ": " << status;
    EXPECT_EQ(status.message(), "what");
    EXPECT_EQ(ExceededLimit(status), std::nullopt) << tag;
  }
}

}  // namespace
}  // namespace txfn::internal
