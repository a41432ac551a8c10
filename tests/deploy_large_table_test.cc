// Deploys over a table of 100,000 documents: a deploy that does not change
// the table's schema does not read it; adding an index backfills it (not
// bound by a function's read or write limits); tightening the schema checks
// every document and refuses, naming the one that does not fit, while the
// old version keeps serving; a write racing a backfill is never lost.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "txfn/engine.h"
#include "txfn/in_memory_storage.h"
#include "txfn/testing/fault_injecting_storage.h"

namespace txfn {
namespace {

using ::testing::HasSubstr;

constexpr int kDocs = 100'000;

constexpr const char* kModule = R"JS(
import { query, mutation } from "txfn/server";
export const fill = mutation(async (ctx, { from, n }) => {
  for (let i = from; i < from + n; i++) {
    await ctx.db.insert("items", { n: BigInt(i), tag: "t" + (i % 1000), label: "x" });
  }
});
export const byTag = query(async (ctx, { tag }) =>
  (await ctx.db.query("items").withIndex("by_tag", (q) => q.eq("tag", tag)).collect()).length);
export const count = query(async (ctx) => (await ctx.db.query("items").take(5)).length);
export const byN = query(async (ctx, { n }) =>
  (await ctx.db.query("items").withIndex("by_n", (q) => q.eq("n", n)).collect()).length);
export const spoil = mutation(async (ctx) => ctx.db.insert("items", { n: -1n, tag: 7, label: "x" }));
)JS";

std::string Schema(bool tag_index, const char* tag_type = "string", bool n_index = false) {
  std::string indexes;
  if (tag_index) indexes += R"("by_tag": ["tag"])";
  if (n_index) indexes += std::string(indexes.empty() ? "" : ", ") + R"("by_n": ["n"])";
  return std::string(R"({"tables": {"items": {"fields": {"n": "int64", "tag": ")") + tag_type +
         R"(", "label": "string"})" + (indexes.empty() ? "" : R"(, "indexes": {)" + indexes + "}") +
         "}}}";
}

class DeployLargeTableTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    storage_ =
        std::make_shared<testing::FaultInjectingStorage>(std::make_shared<InMemoryStorage>());
    EngineOptions options;
    options.custom_storage = storage_;
    options.scheduler.workers = 2;
    auto engine = Engine::Open(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->release();
    ASSERT_TRUE(engine_->CreateTenant("big").ok());
    // "tag" is first loose ("any" type), so spoil() can plant a violator.
    ASSERT_TRUE(engine_->DeployJson("big", {{"m.js", kModule}}, Schema(false, "any")).ok());
    // In chunks well inside a function's time limits, also under ASan on a
    // loaded machine (1,000 inserts once took over the 2 s wall limit there).
    constexpr int kChunk = 250;
    for (int from = 0; from < kDocs; from += kChunk) {
      auto r = engine_->Mutation(
          "big", "m:fill",
          Value::FromObject({{"from", Value::Float64(from)}, {"n", Value::Float64(kChunk)}}));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
    storage_.reset();
  }

  static std::shared_ptr<testing::FaultInjectingStorage> storage_;
  static Engine* engine_;
};

std::shared_ptr<testing::FaultInjectingStorage> DeployLargeTableTest::storage_;
Engine* DeployLargeTableTest::engine_ = nullptr;

TEST_F(DeployLargeTableTest, ACodeOnlyDeployReadsNoDocument) {
  storage_->ResetCounts();
  absl::Status s = engine_->DeployJson(
      "big", {{"m.js", std::string(kModule) + "\nexport const v2 = query(async () => 2);"}},
      Schema(false, "any"));
  ASSERT_TRUE(s.ok()) << s;
  // The deploy reads metadata only: a few scans, none of 100,000 documents.
  EXPECT_LT(storage_->calls(testing::StorageMethod::kScan), 10);
  auto v2 = engine_->Query("big", "m:v2", Value::Null());
  ASSERT_TRUE(v2.ok()) << v2.status();
}

TEST_F(DeployLargeTableTest, AddingAnIndexBackfillsItPastTheFunctionLimits) {
  absl::Status s = engine_->DeployJson("big", {{"m.js", kModule}}, Schema(true, "any"));
  ASSERT_TRUE(s.ok()) << s;  // 100,000 index entries: past 8,000 writes and 32,000 reads
  auto n = engine_->Query("big", "m:byTag", Value::FromObject({{"tag", Value::String("t7")}}));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(ToJson(n->value), "100");
}

TEST_F(DeployLargeTableTest, ATightenedSchemaIsRefusedNamingTheDocumentThatDoesNotFit) {
  auto spoiled = engine_->Mutation("big", "m:spoil", Value::Null());
  ASSERT_TRUE(spoiled.ok()) << spoiled.status();
  const std::string bad_id = spoiled->value.string();
  absl::Status s = engine_->DeployJson("big", {{"m.js", kModule}}, Schema(true, "string"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(bad_id));
  // The old version keeps serving.
  auto count = engine_->Query("big", "m:count", Value::Null());
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(ToJson(count->value), "5");
}

// Writes racing a backfill: the deploy read the whole table, so a write
// committed meanwhile aborts it and it runs again on a newer snapshot; no
// document ends up missing from the new index.
TEST_F(DeployLargeTableTest, WritesRacingABackfillAreIndexed) {
  std::atomic<bool> deploying{true};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; deploying.load() || i < 20; ++i) {
      auto r = engine_->Mutation(
          "big", "m:fill",
          Value::FromObject({{"from", Value::Float64(kDocs + i)}, {"n", Value::Float64(1)}}));
      ASSERT_TRUE(r.ok()) << r.status();
      written.fetch_add(1);
    }
  });
  absl::Status s =
      engine_->DeployJson("big", {{"m.js", kModule}}, Schema(true, "any", /*n_index=*/true));
  deploying = false;
  writer.join();
  ASSERT_TRUE(s.ok()) << s;
  for (int i = 0; i < written.load(); ++i) {
    auto r = engine_->Query("big", "m:byN", Value::FromObject({{"n", Value::Int64(kDocs + i)}}));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(ToJson(r->value), "1") << "document " << kDocs + i;
  }
  auto first = engine_->Query("big", "m:byN", Value::FromObject({{"n", Value::Int64(0)}}));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(ToJson(first->value), "1");
}

}  // namespace
}  // namespace txfn
