// The typed payloads of txfn/errors.h: what is attached reads back exactly,
// and a status without (or with a damaged) payload reads as "none".
#include "txfn/errors.h"

#include <string>
#include <vector>

#include "absl/strings/cord.h"
#include "gtest/gtest.h"
#include "txfn/value.h"

namespace txfn {
namespace {

constexpr Limit kAllLimits[] = {
    Limit::kCpuTime,      Limit::kWallTime,      Limit::kHeap,      Limit::kArrayBufferMemory,
    Limit::kValueSize,    Limit::kDocumentsRead, Limit::kBytesRead, Limit::kDocumentsWritten,
    Limit::kBytesWritten, Limit::kReadRanges,    Limit::kSandbox};

TEST(LimitTest, EveryLimitRoundTripsUnderADistinctName) {
  std::vector<std::string> names;
  for (Limit limit : kAllLimits) {
    absl::Status status = WithLimit(absl::ResourceExhaustedError("over"), limit);
    EXPECT_EQ(ExceededLimit(status), limit) << LimitName(limit);
    EXPECT_EQ(status.message(), "over");
    for (const std::string& seen : names) EXPECT_NE(seen, LimitName(limit));
    names.emplace_back(LimitName(limit));
  }
}

TEST(LimitTest, OnlyAResourceExhaustedStatusWithThePayloadNamesALimit) {
  EXPECT_EQ(ExceededLimit(absl::ResourceExhaustedError("storage quota")), std::nullopt);
  EXPECT_EQ(ExceededLimit(WithLimit(absl::UnknownError("x"), Limit::kHeap)), std::nullopt);
  EXPECT_TRUE(WithLimit(absl::OkStatus(), Limit::kHeap).ok());
  absl::Status garbled = absl::ResourceExhaustedError("x");
  garbled.SetPayload(std::string(kLimitTypeUrl), absl::Cord("no_such_limit"));
  EXPECT_EQ(ExceededLimit(garbled), std::nullopt);
}

TEST(AppErrorTest, RoundTripsNameMessageAndData) {
  const AppError error{
      .name = "RangeError",
      .message = "insufficient funds",
      .data = Value::FromObject({{"code", Value::String("NO_FUNDS")}, {"have", Value::Int64(3)}})};
  absl::Status status = WithAppError(absl::UnknownError("Uncaught RangeError: ..."), error);
  EXPECT_EQ(GetAppError(status), error);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
}

TEST(AppErrorTest, AbsentOrDamagedPayloadIsNoAppError) {
  EXPECT_EQ(GetAppError(absl::UnknownError("x")), std::nullopt);
  EXPECT_EQ(GetAppError(absl::OkStatus()), std::nullopt);
  absl::Status damaged = absl::UnknownError("x");
  damaged.SetPayload(std::string(kAppErrorTypeUrl), absl::Cord("\xff\x01not binary"));
  EXPECT_EQ(GetAppError(damaged), std::nullopt);
  absl::Status wrong_shape = absl::UnknownError("x");
  wrong_shape.SetPayload(std::string(kAppErrorTypeUrl),
                         absl::Cord(EncodeBinary(Value::FromObject({{"name", Value::Int64(1)}}))));
  EXPECT_EQ(GetAppError(wrong_shape), std::nullopt);
}

TEST(FailedCallLogsTest, RoundTripsEveryLevelInOrder) {
  const std::vector<LogEntry> logs = {{LogLevel::kDebug, "d"},
                                      {LogLevel::kLog, "l\nwith newline"},
                                      {LogLevel::kInfo, ""},
                                      {LogLevel::kWarn, "w"},
                                      {LogLevel::kError, std::string(1000, 'e')}};
  absl::Status status = WithLogs(absl::InternalError("failed"), logs);
  EXPECT_EQ(FailedCallLogs(status), logs);
}

TEST(FailedCallLogsTest, NothingIsAttachedToOkOrWithoutLogs) {
  absl::Status ok = WithLogs(absl::OkStatus(), {{LogLevel::kLog, "x"}});
  EXPECT_TRUE(ok.ok());
  EXPECT_TRUE(FailedCallLogs(ok).empty());
  absl::Status none = WithLogs(absl::UnknownError("x"), {});
  EXPECT_FALSE(none.GetPayload(std::string(kLogsTypeUrl)).has_value());
  absl::Status damaged = absl::UnknownError("x");
  damaged.SetPayload(std::string(kLogsTypeUrl), absl::Cord("garbage"));
  EXPECT_TRUE(FailedCallLogs(damaged).empty());
}

TEST(PayloadsTest, OneStatusCarriesSeveralIndependently) {
  absl::Status status =
      WithLogs(WithAppError(absl::UnknownError("x"), AppError{.name = "Error", .message = "m"}),
               {{LogLevel::kWarn, "w"}});
  EXPECT_EQ(GetAppError(status)->message, "m");
  EXPECT_EQ(FailedCallLogs(status).size(), 1u);
  EXPECT_EQ(ExceededLimit(status), std::nullopt);
}

TEST(PrefixedTest, KeepsCodeAndPayloads) {
  absl::Status status =
      Prefixed(WithLimit(absl::ResourceExhaustedError("over"), Limit::kHeap), "function m:f");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "function m:f: over");
  EXPECT_EQ(ExceededLimit(status), Limit::kHeap);
  EXPECT_TRUE(Prefixed(absl::OkStatus(), "x").ok());
}

}  // namespace
}  // namespace txfn
