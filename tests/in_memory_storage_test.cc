// InMemoryStorage: the conformance suite, plus what is specific to this adapter.
#include "txfn/in_memory_storage.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/storage.h"
#include "txfn/testing/storage_conformance.h"

// A "restart" of an in-memory store keeps the object: passing `reopen` runs
// the suite's reopen tests' checks, which then hold trivially.
TXFN_INSTANTIATE_STORAGE_CONFORMANCE(
    InMemory, [] { return std::make_unique<txfn::InMemoryStorage>(); },
    [](std::unique_ptr<txfn::Storage> old) { return old; });

namespace txfn {
namespace {

using ::testing::HasSubstr;

TEST(InMemoryStorageTest, HeaderExampleWorks) {
  InMemoryStorage storage;
  CommitRecord commit{
      .tenant = "shop", .ts = 10, .writes = {{.index = 1, .key = "k", .value = "v"}}};
  ASSERT_TRUE(storage.Write({&commit, 1}).ok());
  auto at10 = storage.Get("shop", 1, "k", 10);
  ASSERT_TRUE(at10.ok());
  EXPECT_EQ(*at10, (IndexEntry{"k", "v", 10}));
  auto at9 = storage.Get("shop", 1, "k", 9);
  ASSERT_TRUE(at9.ok());
  EXPECT_EQ(*at9, std::nullopt);
}

TEST(InMemoryStorageTest, ErrorMessagesNameTheProblem) {
  InMemoryStorage storage;
  CommitRecord ok{.tenant = "shop", .ts = 10, .writes = {}};
  ASSERT_TRUE(storage.Write({&ok, 1}).ok());

  CommitRecord stale{.tenant = "shop", .ts = 7, .writes = {}};
  absl::Status s = storage.Write({&stale, 1});
  EXPECT_THAT(std::string(s.message()), HasSubstr("shop"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("7"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("10"));

  CommitRecord dup{.tenant = "shop",
                   .ts = 11,
                   .writes = {{.index = 4, .key = "a\xff", .value = "1"},
                              {.index = 4, .key = "a\xff", .value = std::nullopt}}};
  s = storage.Write({&dup, 1});
  EXPECT_THAT(std::string(s.message()), HasSubstr("twice"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("\\xff")) << "binary keys are escaped";

  CommitRecord anonymous{.tenant = "", .ts = 11, .writes = {}};
  s = storage.Write({&anonymous, 1});
  EXPECT_THAT(std::string(s.message()), HasSubstr("empty tenant"));

  std::vector<CommitRecord> backwards = {{.tenant = "shop", .ts = 12, .writes = {}},
                                         {.tenant = "shop", .ts = 12, .writes = {}}};
  s = storage.Write(backwards);
  EXPECT_THAT(std::string(s.message()), HasSubstr("strictly increasing"));
}

TEST(InMemoryStorageTest, ManyVersionsOfOneKey) {
  InMemoryStorage storage;
  for (Timestamp ts = 1; ts <= 1000; ++ts) {
    CommitRecord c{
        .tenant = "t",
        .ts = ts * 2,
        .writes = {{.index = 1,
                    .key = "k",
                    .value = ts % 10 == 0 ? std::nullopt
                                          : std::optional<std::string>(std::to_string(ts))}}};
    ASSERT_TRUE(storage.Write({&c, 1}).ok());
  }
  for (Timestamp ts = 1; ts <= 1000; ++ts) {
    auto exact = storage.Get("t", 1, "k", ts * 2);
    auto between = storage.Get("t", 1, "k", ts * 2 + 1);
    ASSERT_TRUE(exact.ok() && between.ok());
    if (ts % 10 == 0) {
      EXPECT_EQ(*exact, std::nullopt);
      EXPECT_EQ(*between, std::nullopt);
    } else {
      EXPECT_EQ(*exact, (IndexEntry{"k", std::to_string(ts), ts * 2}));
      EXPECT_EQ(*between, *exact);
    }
  }
  EXPECT_EQ(*storage.Get("t", 1, "k", 1), std::nullopt);
}

}  // namespace
}  // namespace txfn
