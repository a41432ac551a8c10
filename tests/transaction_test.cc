// Schema, document ids, Snapshot and Transaction (reads, writes, read sets, limits, deploys).
#include "txfn/transaction.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scan_counting_storage.h"
#include "txfn/committer.h"
#include "txfn/in_memory_storage.h"
#include "txfn/schema.h"
#include "txfn/snapshot.h"
#include "txn_test_util.h"

namespace txfn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace testing_util;  // NOLINT(google-build-using-namespace)

std::vector<std::string> Bodies(const QueryPage& page) {
  std::vector<std::string> out;
  for (const Value& doc : page.documents) out.push_back(doc.Find("body")->string());
  return out;
}

// ---- Schema ------------------------------------------------------------------------

TEST(SchemaTest, ParsesTablesFieldsAndIndexes) {
  Schema schema = TestSchema();
  const TableSpec* messages = schema.FindTable("messages");
  ASSERT_NE(messages, nullptr);
  ASSERT_TRUE(messages->fields.has_value());
  EXPECT_EQ(messages->fields->size(), 3u);
  ASSERT_NE(messages->FindIndex("by_channel"), nullptr);
  EXPECT_THAT(messages->FindIndex("by_channel")->fields, ElementsAre("channel", "likes"));
  EXPECT_FALSE(schema.FindTable("notes")->fields.has_value());
  EXPECT_EQ(schema.FindTable("nope"), nullptr);
}

TEST(SchemaTest, RoundTripsThroughValue) {
  Schema schema = TestSchema();
  auto again = Schema::FromValue(schema.ToValue());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, schema);
}

TEST(SchemaTest, RejectsMalformedSchemasNamingTheProblem) {
  struct Case {
    const char* json;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"tables": {"t": {"fields": {"a": "strnig"}}}})", "unknown type 'strnig'"},
           {R"({"tables": {"t": {"indexes": {"by_id": ["a"]}}}})", "invalid index name 'by_id'"},
           {R"({"tables": {"t": {"indexes": {"i": []}}}})", "non-empty array of field paths"},
           {R"({"tables": {"t": {"indexes": {"i": ["$bad"]}}}})", "invalid field path '$bad'"},
           {R"({"tables": {"t": {"colour": 1}}})", "unknown key 'colour'"},
           {R"({"tables": {"_t": {}}})", "invalid table name '_t'"},
           {R"({"tablez": {}})", "unknown key 'tablez'"},
           {R"([1])", "must be an object"},
           {R"({"tables": )", "schema: "},
       }) {
    auto schema = Schema::FromJson(c.json);
    ASSERT_FALSE(schema.ok()) << c.json;
    EXPECT_EQ(schema.status().code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(schema.status().message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(SchemaTest, TypeNamesAreTheValidatorsWithJsAliases) {
  // The canonical names are the schema's; "number", "bigint" and "boolean" (what
  // argument validators used to say) are aliases and read back canonical.
  auto schema = Schema::FromJson(R"({"tables": {"t": {"fields": {
      "a": "int64", "b": "bigint?", "c": "float64", "d": "number", "e": "bool", "f": "boolean",
      "g": "null", "h": "string", "i": "bytes", "j": "array", "k": "object", "l": "any"}}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(ToJson(*schema->ToValue().Find("tables")->Find("t")->Find("fields")),
            R"({"a":"int64","b":"int64?","c":"float64","d":"float64","e":"bool","f":"bool",)"
            R"("g":"null","h":"string","i":"bytes","j":"array","k":"object","l":"any"})");
  auto bad = Schema::FromJson(R"({"tables": {"t": {"fields": {"a": "integer"}}}})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("unknown type 'integer'; valid types: null, int64, float64, bool, string, "
                        "bytes, array, object, any (aliases: number = float64, bigint = int64, "
                        "boolean = bool)"));
}

TEST(SchemaTest, ValidatesDocuments) {
  Schema schema = TestSchema();
  EXPECT_TRUE(
      schema.ValidateDocument("messages", Obj({{"channel", Str("a")}, {"body", Str("b")}})).ok());
  auto missing = schema.ValidateDocument("messages", Obj({{"channel", Str("a")}}));
  EXPECT_THAT(std::string(missing.message()), HasSubstr("missing required field 'body'"));
  auto wrong = schema.ValidateDocument("messages", Obj({{"channel", I64(1)}, {"body", Str("b")}}));
  EXPECT_THAT(std::string(wrong.message()), HasSubstr("'channel' must be string, got int64"));
  auto extra = schema.ValidateDocument(
      "messages", Obj({{"channel", Str("a")}, {"body", Str("b")}, {"x", I64(1)}}));
  EXPECT_THAT(std::string(extra.message()), HasSubstr("'x' is not in the schema"));
  EXPECT_EQ(schema.ValidateDocument("ghosts", Obj({})).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(schema.ValidateDocument("notes", Obj({{"anything", I64(1)}})).ok());
}

// ---- Document ids --------------------------------------------------------------------

TEST(DocumentIdTest, NamesItsTableAndRejectsMalformedIds) {
  std::string random(16, '\xab');
  for (IndexId table : {IndexId{1}, IndexId{77}, IndexId{0xFFFFFFFF}}) {
    std::string id = MakeDocumentId(table, random);
    EXPECT_EQ(id.size(), kDocumentIdLength);
    auto decoded = DocumentIdTable(id);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, table);
  }
  EXPECT_FALSE(DocumentIdTable("short").ok());
  // The encoding is a file format: these are the ids of the first version.
  std::string counting;
  for (char c = 0; c < 16; ++c) counting.push_back(c);
  EXPECT_EQ(MakeDocumentId(0x12345678, counting), "000g40r40m30e209185gr38e1w938nkr");
  EXPECT_EQ(MakeDocumentId(0xffffffff, std::string(16, '\xff')), std::string(32, 'z'));
  std::string alternating;
  for (int i = 0; i < 8; ++i) alternating += "\xa5\x5a";
  EXPECT_EQ(MakeDocumentId(7, alternating), "mndaapn5bajnn9atmndaapn5b8000007");
  EXPECT_EQ(DocumentIdTable("000g40r40m30e209185gr38e1w938nkr").value(), 0x12345678u);
  std::string bad = MakeDocumentId(1, random);
  bad[5] = 'U';  // not in the alphabet
  EXPECT_EQ(DocumentIdTable(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DocumentIdTest, WithTableKeepsTheTimeAndRandomPart) {
  std::string counting;
  for (char c = 0; c < 16; ++c) counting.push_back(c);
  for (IndexId from : {IndexId{1}, IndexId{0x12345678}, IndexId{0xFFFFFFFF}}) {
    for (IndexId to : {IndexId{0}, IndexId{2}, IndexId{0xFFFFFFFF}}) {
      auto moved = DocumentIdWithTable(MakeDocumentId(from, counting), to);
      ASSERT_TRUE(moved.ok()) << moved.status();
      EXPECT_EQ(*moved, MakeDocumentId(to, counting)) << from << " -> " << to;
    }
  }
  EXPECT_EQ(DocumentIdWithTable("short", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DocumentIdWithTable(std::string(32, 'U'), 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Transactions ------------------------------------------------------------------

class TransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage_ = std::make_shared<InMemoryStorage>();
    committer_ = OpenWithSchema(storage_, {.clock = clock_.AsFunction()});
  }

  Transaction Begin(TransactionOptions options = {}) {
    return Transaction(committer_->Latest(), std::move(options));
  }

  // Inserts messages in one committed transaction; returns their ids.
  std::vector<std::string> InsertMessages(
      const std::vector<std::tuple<std::string, std::string, int64_t>>& rows) {
    Transaction txn = Begin();
    std::vector<std::string> ids;
    for (const auto& [channel, body, likes] : rows) {
      auto id = txn.Insert(
          "messages", Obj({{"channel", Str(channel)}, {"body", Str(body)}, {"likes", I64(likes)}}));
      EXPECT_TRUE(id.ok()) << id.status();
      ids.push_back(*id);
    }
    EXPECT_TRUE(committer_->Commit(txn.Prepare()).ok());
    return ids;
  }

  FakeClock clock_;
  std::shared_ptr<InMemoryStorage> storage_;
  std::unique_ptr<Committer> committer_;
};

TEST_F(TransactionTest, InsertAddsSystemFieldsAndIsVisibleToItselfAndLaterSnapshots) {
  Transaction txn = Begin();
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id, txn.Insert("notes", Obj({{"text", Str("hello")}})));
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> own, txn.Get(id));
  ASSERT_TRUE(own.has_value());
  EXPECT_EQ(own->Find("_id")->string(), id);
  EXPECT_TRUE(own->Find("_creationTime")->is_float64());
  EXPECT_EQ(DocumentIdTable(id).value(),
            committer_->Latest()->metadata().FindTable("notes")->by_id);

  // Not visible to others before the commit.
  Transaction other = Begin();
  EXPECT_FALSE(other.Get(id).value().has_value());

  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  Transaction later = Begin();
  TXFN_ASSERT_OK_AND_ASSIGN(std::optional<Value> seen, later.Get(id));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, *own);
  EXPECT_EQ(committer_->Latest()->GetDocument(id).value(), own);
}

TEST_F(TransactionTest, IdsAreDistinctAndDeterministicOnlyWhenAskedFor) {
  auto ids = [&](std::optional<uint64_t> seed, bool deterministic) {
    Transaction txn = Begin({.id_seed = seed, .deterministic_ids = deterministic});
    std::vector<std::string> out;
    for (int i = 0; i < 3; ++i) out.push_back(txn.Insert("notes", Obj({})).value());
    return out;
  };
  EXPECT_EQ(ids(42, true), ids(42, true));
  EXPECT_NE(ids(42, true), ids(43, true));
  EXPECT_NE(ids(42, false), ids(42, false)) << "a seed alone does not fix ids";
  std::vector<std::string> random = ids(std::nullopt, false);
  EXPECT_NE(random, ids(std::nullopt, false));
  EXPECT_NE(random[0], random[1]);
}

TEST_F(TransactionTest, AnInsertReadsItsIdSoRacingInsertsOfOneIdConflict) {
  // Deterministic ids (a replay) with one seed: both draw the same id.
  Transaction a = Begin({.id_seed = 5, .deterministic_ids = true});
  Transaction b = Begin({.id_seed = 5, .deterministic_ids = true});
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id_a, a.Insert("notes", Obj({{"n", I64(1)}})));
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id_b, b.Insert("notes", Obj({{"n", I64(2)}})));
  ASSERT_EQ(id_a, id_b);
  EXPECT_THAT(a.read_set(), ::testing::Contains(ReadRange{.index = *DocumentIdTable(id_a),
                                                          .range = KeyRange::Point(id_a)}));
  ASSERT_TRUE(committer_->Commit(a.Prepare()).ok());
  EXPECT_EQ(committer_->Commit(b.Prepare()).status().code(), absl::StatusCode::kAborted);
  // Run again at the new snapshot with the same seed: the first id drawn is
  // taken, so the insert draws the next one.
  Transaction again = Begin({.id_seed = 5, .deterministic_ids = true});
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id_again, again.Insert("notes", Obj({{"n", I64(2)}})));
  EXPECT_NE(id_again, id_a);
  ASSERT_TRUE(committer_->Commit(again.Prepare()).ok());
  EXPECT_EQ(committer_->Latest()->GetDocument(id_a).value()->Find("n")->int64(), 1);
  EXPECT_EQ(committer_->Latest()->GetDocument(id_again).value()->Find("n")->int64(), 2);
}

TEST_F(TransactionTest, IdReadsDoNotCountAgainstTheReadRangeLimit) {
  TransactionLimits limits;
  limits.max_read_ranges = 1;
  Transaction txn = Begin({.limits = limits});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  EXPECT_EQ(txn.read_set().size(), 5u);
  ASSERT_TRUE(txn.Query({.table = "notes", .limit = 1}).ok());
  EXPECT_EQ(txn.Query({.table = "notes", .limit = 1}).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(TransactionTest, ImportDocumentKeepsTheExportedIdentity) {
  std::vector<std::string> ids = InsertMessages({{"c", "hello", 3}});
  Value exported = *committer_->Latest()->GetDocument(ids[0]).value();
  // Into a fresh tenant with the same schema (same table ids).
  auto storage = std::make_shared<InMemoryStorage>();
  std::unique_ptr<Committer> other = OpenWithSchema(storage, {.clock = clock_.AsFunction()});
  Transaction import(other->Latest());
  ASSERT_TRUE(import.ImportDocument("messages", exported).ok());
  EXPECT_EQ(import.ImportDocument("messages", exported).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(other->Commit(import.Prepare()).ok());
  EXPECT_EQ(other->Latest()->GetDocument(ids[0]).value(), exported);
  Transaction query(other->Latest());
  TXFN_ASSERT_OK_AND_ASSIGN(
      QueryPage page, query.Query({.table = "messages", .index = "by_channel", .eq = {Str("c")}}));
  EXPECT_THAT(Bodies(page), ElementsAre("hello"));
  Transaction twice(other->Latest());
  EXPECT_EQ(twice.ImportDocument("messages", exported).code(), absl::StatusCode::kAlreadyExists);

  Transaction bad(other->Latest());
  auto with = [&](const char* field, Value v) {
    Value::Object o = exported.object();
    o.insert_or_assign(field, std::move(v));
    return Value::FromObject(std::move(o));
  };
  auto without = [&](const char* field) {
    Value::Object o = exported.object();
    o.erase(field);
    return Value::FromObject(std::move(o));
  };
  EXPECT_THAT(bad.ImportDocument("notes", exported).message(),
              HasSubstr("names table 'messages', not table 'notes'"));
  EXPECT_EQ(bad.ImportDocument("messages", without("_id")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.ImportDocument("messages", without("_creationTime")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.ImportDocument("messages", with("_id", Str("nope"))).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.ImportDocument("messages", with("body", I64(1))).code(),
            absl::StatusCode::kInvalidArgument)
      << "validated against the schema";
  EXPECT_EQ(bad.ImportDocument("messages", with("_secret", I64(1))).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.ImportDocument("nope", exported).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(bad.has_writes());
}

// Issue 11: two mutations with the same (default) seed at the same snapshot in
// the same millisecond used to draw the same id; both committed, one document
// replaced the other and its index entry stayed behind.
TEST_F(TransactionTest, TwoTransactionsWithTheSameSeedInsertDistinctDocuments) {
  Transaction a = Begin({.id_seed = 0});
  Transaction b = Begin({.id_seed = 0});
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id_a,
                            a.Insert("messages", Obj({{"channel", Str("c")}, {"body", Str("a")}})));
  TXFN_ASSERT_OK_AND_ASSIGN(std::string id_b,
                            b.Insert("messages", Obj({{"channel", Str("c")}, {"body", Str("b")}})));
  EXPECT_NE(id_a, id_b);
  ASSERT_TRUE(committer_->Commit(a.Prepare()).ok());
  ASSERT_TRUE(committer_->Commit(b.Prepare()).ok());

  IndexQuery by_channel{.table = "messages", .index = "by_channel", .eq = {Str("c")}};
  Transaction check = Begin();
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage page, check.Query(by_channel));
  EXPECT_THAT(Bodies(page), ::testing::UnorderedElementsAre("a", "b"));
  ASSERT_TRUE(check.Delete(id_a).ok());
  ASSERT_TRUE(committer_->Commit(check.Prepare()).ok());
  Transaction after = Begin();
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage rest, after.Query(by_channel));
  EXPECT_THAT(Bodies(rest), ElementsAre("b"));
}

TEST_F(TransactionTest, IdsOfLaterTransactionsSortAfterEarlierOnes) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    Transaction txn = Begin();
    std::string first = txn.Insert("notes", Obj({})).value();
    std::string second = txn.Insert("notes", Obj({})).value();
    EXPECT_NE(first, second);  // the same millisecond: the random part differs
    EXPECT_EQ(first.substr(0, 9), second.substr(0, 9));  // 45 bits of the 48-bit time
    ids.push_back(first);
    // Ids take the begin timestamp (the snapshot's): commit 2 ms later, so
    // the next transaction begins in a later millisecond.
    clock_.Advance(2'000'000);
    ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
}

TEST_F(TransactionTest, WritesAreValidatedAndAFailedWriteChangesNothing) {
  Transaction txn = Begin();
  EXPECT_EQ(txn.Insert("ghosts", Obj({})).status().code(), absl::StatusCode::kNotFound);
  auto system = txn.Insert("notes", Obj({{"_id", Str("x")}}));
  EXPECT_THAT(std::string(system.status().message()), HasSubstr("'_id' is reserved"));
  auto scalar = txn.Insert("notes", I64(3));
  EXPECT_THAT(std::string(scalar.status().message()), HasSubstr("must be an object"));
  auto typed = txn.Insert("accounts", Obj({{"owner", Str("a")}, {"balance", Str("lots")}}));
  EXPECT_EQ(typed.status().code(), absl::StatusCode::kInvalidArgument);
  auto field = txn.Insert("notes", Obj({{"bad-name", I64(1)}}));
  EXPECT_EQ(field.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(txn.has_writes());
  EXPECT_TRUE(txn.Prepare().writes.empty());
}

TEST_F(TransactionTest, PatchReplaceDeleteAndMissingDocuments) {
  std::string id = InsertMessages({{"a", "first", 1}})[0];
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Patch(id, Obj({{"body", Str("patched")}})).ok());
  EXPECT_EQ(txn.Get(id).value()->Find("body")->string(), "patched");
  EXPECT_EQ(txn.Get(id).value()->Find("channel")->string(), "a");
  EXPECT_EQ(txn.Patch(id, Obj({{"likes", Str("many")}})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(txn.Get(id).value()->Find("likes")->int64(), 1);  // the failed patch left nothing
  // Removed fields: an optional one goes; a required or system one is refused.
  const std::vector<std::string> likes = {"likes"};
  ASSERT_TRUE(txn.Patch(id, Obj({}), likes).ok());
  EXPECT_EQ(txn.Get(id).value()->Find("likes"), nullptr);
  ASSERT_TRUE(txn.Patch(id, Obj({{"likes", I64(1)}}), likes).ok()) << "set wins over removed";
  EXPECT_EQ(txn.Get(id).value()->Find("likes")->int64(), 1);
  const std::vector<std::string> body = {"body"};
  EXPECT_EQ(txn.Patch(id, Obj({}), body).code(), absl::StatusCode::kInvalidArgument);
  const std::vector<std::string> system = {"_creationTime"};
  EXPECT_EQ(txn.Patch(id, Obj({}), system).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(txn.Get(id).value()->Find("body")->string(), "patched");
  EXPECT_NE(txn.Get(id).value()->Find("_creationTime"), nullptr);

  ASSERT_TRUE(txn.Replace(id, Obj({{"channel", Str("b")}, {"body", Str("new")}})).ok());
  Value replaced = *txn.Get(id).value();
  EXPECT_EQ(replaced.Find("likes"), nullptr);
  EXPECT_EQ(replaced.Find("_id")->string(), id);
  EXPECT_NE(replaced.Find("_creationTime"), nullptr);

  ASSERT_TRUE(txn.Delete(id).ok());
  EXPECT_FALSE(txn.Get(id).value().has_value());
  EXPECT_EQ(txn.Delete(id).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(txn.Patch(id, Obj({})).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  EXPECT_FALSE(Begin().Get(id).value().has_value());
  // Its index entry went with it.
  EXPECT_TRUE(
      Begin().Query({.table = "messages", .index = "by_channel"}).value().documents.empty());
}

TEST_F(TransactionTest, IndexRangesInBothOrdersWithBoundsAndLimits) {
  InsertMessages({{"a", "a1", 1}, {"a", "a2", 2}, {"a", "a3", 3}, {"b", "b1", 1}, {"a", "a5", 5}});
  Transaction txn = Begin();
  auto query = [&](IndexQuery q) { return Bodies(txn.Query(q).value()); };
  IndexQuery base{.table = "messages", .index = "by_channel", .eq = {Str("a")}};
  EXPECT_THAT(query(base), ElementsAre("a1", "a2", "a3", "a5"));
  IndexQuery desc = base;
  desc.order = ScanOrder::kDescending;
  EXPECT_THAT(query(desc), ElementsAre("a5", "a3", "a2", "a1"));
  IndexQuery gt = base;
  gt.lower = IndexBound{I64(2), false};
  EXPECT_THAT(query(gt), ElementsAre("a3", "a5"));
  IndexQuery gte_lte = base;
  gte_lte.lower = IndexBound{I64(2), true};
  gte_lte.upper = IndexBound{I64(3), true};
  EXPECT_THAT(query(gte_lte), ElementsAre("a2", "a3"));
  IndexQuery lt_desc = base;
  lt_desc.upper = IndexBound{I64(3), false};
  lt_desc.order = ScanOrder::kDescending;
  lt_desc.limit = 1;
  EXPECT_THAT(query(lt_desc), ElementsAre("a2"));
  IndexQuery empty = base;
  empty.lower = IndexBound{I64(4), false};
  empty.upper = IndexBound{I64(4), false};
  EXPECT_THAT(query(empty), ElementsAre());
  EXPECT_THAT(query({.table = "messages", .index = "by_channel", .limit = 2}),
              ElementsAre("a1", "a2"));
  EXPECT_EQ(query({.table = "messages"}).size(), 5u);  // by_id: the whole table

  EXPECT_EQ(txn.Query({.table = "messages", .index = "nope"}).status().code(),
            absl::StatusCode::kNotFound);
  auto too_many =
      txn.Query({.table = "messages", .index = "by_channel", .eq = {Str("a"), I64(1), I64(2)}});
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(txn.Query({.table = "messages", .eq = {Str("x")}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TransactionTest, RangeScansSeeTheTransactionsOwnWrites) {
  std::vector<std::string> ids = InsertMessages({{"a", "a1", 1}, {"a", "a2", 2}, {"a", "a3", 3}});
  Transaction txn = Begin();
  ASSERT_TRUE(
      txn.Insert("messages", Obj({{"channel", Str("a")}, {"body", Str("own0")}, {"likes", I64(0)}}))
          .ok());
  ASSERT_TRUE(txn.Delete(ids[1]).ok());
  ASSERT_TRUE(txn.Patch(ids[0], Obj({{"likes", I64(9)}})).ok());  // moves a1 to the end
  IndexQuery q{.table = "messages", .index = "by_channel", .eq = {Str("a")}};
  EXPECT_THAT(Bodies(txn.Query(q).value()), ElementsAre("own0", "a3", "a1"));
  q.limit = 2;
  EXPECT_THAT(Bodies(txn.Query(q).value()), ElementsAre("own0", "a3"));
  q.order = ScanOrder::kDescending;
  EXPECT_THAT(Bodies(txn.Query(q).value()), ElementsAre("a1", "a3"));
}

TEST_F(TransactionTest, PaginationWithCursorsIsStableUnderConcurrentInserts) {
  InsertMessages({{"a", "a1", 10}, {"a", "a2", 20}, {"a", "a3", 30}, {"a", "a4", 40}});
  IndexQuery q{.table = "messages", .index = "by_channel", .eq = {Str("a")}, .limit = 2};
  QueryPage first = Begin().Query(q).value();
  EXPECT_THAT(Bodies(first), ElementsAre("a1", "a2"));
  EXPECT_FALSE(first.done);
  // Inserted before the cursor and after it.
  InsertMessages({{"a", "a0", 0}, {"a", "a25", 25}});
  q.cursor = first.cursor;
  QueryPage second = Begin().Query(q).value();
  EXPECT_THAT(Bodies(second), ElementsAre("a25", "a3"));
  q.cursor = second.cursor;
  QueryPage third = Begin().Query(q).value();
  EXPECT_THAT(Bodies(third), ElementsAre("a4"));
  EXPECT_TRUE(third.done);
}

TEST_F(TransactionTest, ReadSetRecordsPointReadsAndOnlyTheCoveredPartOfALimitedRange) {
  std::vector<std::string> ids = InsertMessages({{"a", "a1", 1}, {"a", "a2", 2}, {"a", "a3", 3}});
  const TableInfo* messages = committer_->Latest()->metadata().FindTable("messages");
  IndexId by_channel = messages->FindIndex("by_channel")->id;
  Transaction txn = Begin();
  ASSERT_TRUE(txn.Get(ids[0]).ok());
  ASSERT_EQ(txn.read_set().size(), 1u);
  EXPECT_EQ(txn.read_set()[0].index, messages->by_id);
  EXPECT_EQ(txn.read_set()[0].range, KeyRange::Point(ids[0]));

  ASSERT_TRUE(
      txn.Query({.table = "messages", .index = "by_channel", .eq = {Str("a")}, .limit = 2}).ok());
  ASSERT_EQ(txn.read_set().size(), 2u);
  const ReadRange& range = txn.read_set()[1];
  EXPECT_EQ(range.index, by_channel);
  Value a2 = *committer_->Latest()->GetDocument(ids[1]).value();
  Value a3 = *committer_->Latest()->GetDocument(ids[2]).value();
  EXPECT_TRUE(range.range.Contains(SecondaryIndexKey({"channel", "likes"}, a2, ids[1])));
  EXPECT_FALSE(range.range.Contains(SecondaryIndexKey({"channel", "likes"}, a3, ids[2])));
  EXPECT_EQ(txn.stats().documents_read, 3u);

  // A query's commit carries its reads but no metadata read; a writer's does.
  EXPECT_EQ(txn.Prepare().reads.size(), 2u);
  TXFN_ASSERT_OK_AND_ASSIGN(std::string note, txn.Insert("notes", Obj({})));
  PreparedCommit commit = txn.Prepare();
  ASSERT_EQ(commit.reads.size(), 4u);  // + the insert's read of its new id
  EXPECT_EQ(commit.reads[2].range, KeyRange::Point(note));
  EXPECT_EQ(commit.reads.back().index, kMetadataIndex);
}

TEST_F(TransactionTest, LimitsAreResourceExhaustedNamingTheLimit) {
  std::vector<std::string> ids = InsertMessages({{"a", "1", 1}, {"a", "2", 2}, {"a", "3", 3}});
  auto expect_limit = [](const absl::Status& s, const char* name) {
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(name));
  };
  Transaction reads = Begin({.limits = {.max_documents_read = 2}});
  expect_limit(reads.Query({.table = "messages"}).status(), "documents read");
  Transaction bytes = Begin({.limits = {.max_bytes_read = 10}});
  expect_limit(bytes.Get(ids[0]).status(), "bytes read");
  Transaction ranges = Begin({.limits = {.max_read_ranges = 2}});
  ASSERT_TRUE(ranges.Get(ids[0]).ok());
  ASSERT_TRUE(ranges.Get(ids[1]).ok());
  expect_limit(ranges.Get(ids[2]).status(), "index ranges read");
  Transaction writes = Begin({.limits = {.max_documents_written = 2}});
  ASSERT_TRUE(writes.Insert("notes", Obj({})).ok());
  ASSERT_TRUE(writes.Insert("notes", Obj({})).ok());
  expect_limit(writes.Insert("notes", Obj({})).status(), "documents written");
  Transaction written_bytes = Begin({.limits = {.max_bytes_written = 100}});
  expect_limit(written_bytes.Insert("notes", Obj({{"big", Str(std::string(200, 'x'))}})).status(),
               "bytes written");
  EXPECT_FALSE(written_bytes.has_writes());
  Transaction doc_size = Begin({.limits = {.document = {.max_size_bytes = 64}}});
  EXPECT_EQ(doc_size.Insert("notes", Obj({{"big", Str(std::string(100, 'x'))}})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A transaction's ids sort in the order it made them, so by_id returns its inserts in that
// order (with random bytes after the time they came back shuffled, a different first each run),
// and they still differ in 64 random bits.
TEST_F(TransactionTest, IdsOfOneTransactionSortInTheOrderItMadeThem) {
  Transaction txn = Begin();
  std::vector<std::string> made;
  for (int i = 0; i < 300; ++i) {
    TXFN_ASSERT_OK_AND_ASSIGN(std::string id, txn.Insert("notes", Obj({{"i", I64(i)}})));
    made.push_back(id);
  }
  EXPECT_TRUE(std::is_sorted(made.begin(), made.end()));
  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage page, Begin().Query({.table = "notes"}));
  ASSERT_EQ(page.documents.size(), made.size());
  for (size_t i = 0; i < made.size(); ++i) {
    EXPECT_EQ(page.documents[i].Find("_id")->string(), made[i]) << i;
  }
  // Two transactions' first ids share time and number (the first 64 bits: 12.8 characters),
  // not their random bytes.
  Transaction a = Begin(), b = Begin();
  TXFN_ASSERT_OK_AND_ASSIGN(std::string first_a, a.Insert("notes", Obj({})));
  TXFN_ASSERT_OK_AND_ASSIGN(std::string first_b, b.Insert("notes", Obj({})));
  EXPECT_EQ(first_a.substr(0, 12), first_b.substr(0, 12));
  EXPECT_NE(first_a.substr(13, 13), first_b.substr(13, 13));
}

// A query reads storage a page at a time, each counted against the read limits before the next
// is read: a collect() of a table of 1,200 documents of 1 MiB loaded all 1.2 GB before the
// limits saw the first (and past the CPU limit: the scan is C++).
TEST_F(TransactionTest, QueriesStopReadingStorageAtTheReadLimits) {
  auto storage =
      std::make_shared<testing_util::ScanCountingStorage>(std::make_shared<InMemoryStorage>());
  std::unique_ptr<Committer> committer = OpenWithSchema(storage, {.clock = clock_.AsFunction()});
  Transaction fill(committer->Latest());
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(
        fill.Insert("messages", Obj({{"channel", Str("a")}, {"body", Str("b")}, {"likes", I64(i)}}))
            .ok());
  }
  ASSERT_TRUE(committer->Commit(fill.Prepare()).ok());
  for (bool by_id : {true, false}) {
    IndexQuery all{.table = "messages"};
    if (!by_id) all = {.table = "messages", .index = "by_channel", .eq = {Str("a")}};
    storage->scanned = 0;
    Transaction documents(committer->Latest(), {.limits = {.max_documents_read = 100}});
    absl::Status over = documents.Query(all).status();
    EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
    EXPECT_LE(storage->scanned, 101u + 64u) << "by_id " << by_id;
    storage->scanned = 0;
    Transaction bytes(committer->Latest(), {.limits = {.max_bytes_read = 4096}});
    over = bytes.Query(all).status();
    EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
    EXPECT_LE(storage->scanned, 64u * 2) << "by_id " << by_id;
    // A query asking for less reads that many.
    storage->scanned = 0;
    IndexQuery ten = all;
    ten.limit = 10;
    Transaction few(committer->Latest());
    TXFN_ASSERT_OK_AND_ASSIGN(QueryPage page, few.Query(ten));
    EXPECT_EQ(page.documents.size(), 10u);
    EXPECT_EQ(storage->scanned, 10u) << "by_id " << by_id;
  }
}

// Read a page at a time, a range with this transaction's own inserts, deletes and moves among
// its stored entries reads as one scan would, in both orders, whole or paginated at page sizes
// around the scan's own (storage is cut mid-range, with own writes on both sides of the cut).
TEST_F(TransactionTest, PagedQueriesMergeTheTransactionsOwnWrites) {
  constexpr int kStored = 3000;
  std::vector<std::tuple<std::string, std::string, int64_t>> rows;
  for (int i = 0; i < kStored; ++i) rows.emplace_back("a", "s" + std::to_string(i), i * 10);
  std::vector<std::string> ids = InsertMessages(rows);
  // Every page is a read range, and the documents are read many times over.
  Transaction txn = Begin({.limits = {.max_documents_read = SIZE_MAX,
                                      .max_bytes_read = SIZE_MAX,
                                      .max_read_ranges = SIZE_MAX}});
  std::map<int64_t, std::string> expected;  // likes -> body: by_channel's order within "a"
  for (int i = 0; i < kStored; ++i) expected[i * 10] = "s" + std::to_string(i);
  for (int i = 0; i < kStored; ++i) {
    if (i % 3 == 0 || (i >= 1000 && i < 1200)) {  // delete a third, and a run of 200
      ASSERT_TRUE(txn.Delete(ids[i]).ok());
      expected.erase(i * 10);
    } else if (i % 7 == 1) {  // move some
      ASSERT_TRUE(txn.Patch(ids[i], Obj({{"likes", I64(i * 10 + 5)}})).ok());
      expected[i * 10 + 5] = expected[i * 10];
      expected.erase(i * 10);
    }
  }
  for (int i = 0; i < 1500; ++i) {  // and insert between (and 300 past the last)
    ASSERT_TRUE(txn.Insert("messages", Obj({{"channel", Str("a")},
                                            {"body", Str("own" + std::to_string(i))},
                                            {"likes", I64(i * 25 + 3)}}))
                    .ok());
    expected[i * 25 + 3] = "own" + std::to_string(i);  // likes of 3 mod 5: none stored or moved
  }
  std::vector<std::string> ascending;
  for (const auto& [likes, body] : expected) ascending.push_back(body);
  for (ScanOrder order : {ScanOrder::kAscending, ScanOrder::kDescending}) {
    std::vector<std::string> want = ascending;
    if (order == ScanOrder::kDescending) std::reverse(want.begin(), want.end());
    IndexQuery q{.table = "messages", .index = "by_channel", .eq = {Str("a")}, .order = order};
    TXFN_ASSERT_OK_AND_ASSIGN(QueryPage all, txn.Query(q));
    EXPECT_EQ(Bodies(all), want);
    EXPECT_TRUE(all.done);
    for (size_t size : {1, 7, 63, 64, 65, 150, 1000}) {
      q.limit = size;
      q.cursor.clear();
      std::vector<std::string> seen;
      for (int pages = 0;; ++pages) {
        ASSERT_LT(pages, 10'000);
        TXFN_ASSERT_OK_AND_ASSIGN(QueryPage page, txn.Query(q));
        ASSERT_LE(page.documents.size(), size);
        std::vector<std::string> bodies = Bodies(page);
        seen.insert(seen.end(), bodies.begin(), bodies.end());
        if (page.done) break;
        ASSERT_EQ(page.documents.size(), size) << "a page short of its limit is the last";
        q.cursor = page.cursor;
      }
      EXPECT_EQ(seen, want) << "pages of " << size;
    }
  }
}

// A mutation's own writes do not widen what one page reads from storage: with a thousand own
// inserts in the range, a query asked storage for 64 + 1,000 entries a page (every stored
// document they might shadow, whole, before the limits counted one).
TEST_F(TransactionTest, OwnWritesDoNotWidenAPagesStorageRead) {
  auto storage =
      std::make_shared<testing_util::ScanCountingStorage>(std::make_shared<InMemoryStorage>());
  std::unique_ptr<Committer> committer = OpenWithSchema(storage, {.clock = clock_.AsFunction()});
  Transaction fill(committer->Latest());
  const std::string body(16 << 10, 'x');
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(fill.Insert("notes", Obj({{"body", Str(body)}})).ok());
  }
  ASSERT_TRUE(committer->Commit(fill.Prepare()).ok());
  clock_.Advance(1'000'000);  // a later millisecond: the inserts' ids sort after the stored
  Transaction txn(committer->Latest(), {.limits = {.max_bytes_read = 1 << 20}});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(txn.Insert("notes", Obj({})).ok());
  storage->scanned = 0;
  absl::Status over = txn.Query({.table = "notes"}).status();
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_LE(storage->scanned, 2u * 64) << "1 MiB is 64 stored documents";
  // Deleting half of them: every stored entry is read once, not once a page.
  Transaction deletes(committer->Latest(), {.limits = {.max_bytes_read = 64 << 20}});
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage all, deletes.Query({.table = "notes"}));
  ASSERT_EQ(all.documents.size(), 1000u);
  for (size_t i = 0; i < all.documents.size(); i += 2) {
    ASSERT_TRUE(deletes.Delete(all.documents[i].Find("_id")->string()).ok());
  }
  storage->scanned = 0;
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage left, deletes.Query({.table = "notes"}));
  EXPECT_EQ(left.documents.size(), 500u);
  EXPECT_LE(storage->scanned, 1000u);
}

// "No limit" limits (SIZE_MAX) leave a query's own limit to apply.
TEST_F(TransactionTest, UnlimitedReadLimitsStillTakeTheQuerysLimit) {
  std::vector<std::tuple<std::string, std::string, int64_t>> rows;
  for (int i = 0; i < 100; ++i) rows.emplace_back("a", "m", i);
  InsertMessages(rows);
  Transaction txn = Begin({.limits = {.max_documents_read = SIZE_MAX, .max_bytes_read = SIZE_MAX}});
  TXFN_ASSERT_OK_AND_ASSIGN(QueryPage page, txn.Query({.table = "messages", .limit = 10}));
  EXPECT_EQ(page.documents.size(), 10u);
  EXPECT_FALSE(page.done);
}

// An index entry carries the indexed values: a big value under an index is
// written twice, and both count (a table with 32 indexes multiplied a 1 MB
// value by 33, all outside the limit).
TEST_F(TransactionTest, IndexEntriesCountAsBytesWritten) {
  const std::string big(600, 'x');
  const Value doc = Obj({{"channel", Str(big)}, {"body", Str("b")}});
  Transaction fits = Begin({.limits = {.max_bytes_written = 1000}});
  ASSERT_TRUE(fits.Insert("notes", Obj({{"channel", Str(big)}})).ok()) << "no index: 600 bytes";
  Transaction indexed = Begin({.limits = {.max_bytes_written = 1000}});
  absl::Status over = indexed.Insert("messages", doc).status();
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_THAT(std::string(over.message()), HasSubstr("index entries"));
  EXPECT_FALSE(indexed.has_writes()) << "nothing of the refused write stays";
  Transaction roomy = Begin({.limits = {.max_bytes_written = 1400}});
  ASSERT_TRUE(roomy.Insert("messages", doc).ok());
  EXPECT_GT(roomy.stats().bytes_written, 1200u) << "the document and its index entry";
}

// Big range bounds are kept (with copies) until the commit: they count as
// bytes read; ordinary ones do not.
TEST_F(TransactionTest, BigRangeBoundsCountAsBytesRead) {
  InsertMessages({{"a", "1", 1}});
  Transaction small = Begin({.limits = {.max_bytes_read = 1 << 20}});
  ASSERT_TRUE(small.Query({.table = "messages", .index = "by_channel", .eq = {Str("a")}}).ok());
  const size_t after_small = small.stats().bytes_read;
  ASSERT_TRUE(small.Query({.table = "messages", .index = "by_channel", .eq = {Str("b")}}).ok());
  EXPECT_EQ(small.stats().bytes_read, after_small) << "a small bound costs nothing";
  Transaction big = Begin({.limits = {.max_bytes_read = 100'000}});
  const Value bound = Str(std::string(40'000, 'x'));
  ASSERT_TRUE(big.Query({.table = "messages", .index = "by_channel", .eq = {bound}}).ok());
  EXPECT_GE(big.stats().bytes_read, 40'000u);
  absl::Status over =
      big.Query({.table = "messages", .index = "by_channel", .eq = {bound}}).status();
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_THAT(std::string(over.message()), HasSubstr("range bounds"));
}

TEST_F(TransactionTest, ReadOnlyTransactionsCannotWrite) {
  Transaction query = Begin({.read_only = true});
  auto insert = query.Insert("notes", Obj({}));
  EXPECT_EQ(insert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(insert.status().message()), HasSubstr("cannot write"));
  EXPECT_EQ(query.SetEnabled(false).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TransactionTest, DeployBackfillsNewIndexesAndKeepsOldIds) {
  InsertMessages({{"a", "x", 2}, {"b", "y", 1}});
  const TenantMetadata& before = committer_->Latest()->metadata();
  Schema schema = TestSchema();
  Value v = schema.ToValue();
  Value::Object tables = v.Find("tables")->object();
  Value::Object messages = tables.at("messages").object();
  Value::Object indexes = messages.at("indexes").object();
  indexes.emplace("by_likes", Value::FromArray({Str("likes")}));
  messages.insert_or_assign("indexes", Value::FromObject(indexes));
  tables.insert_or_assign("messages", Value::FromObject(messages));
  Schema with_index = Schema::FromValue(Obj({{"tables", Value::FromObject(tables)}})).value();

  Transaction deploy = Begin();
  ASSERT_TRUE(deploy.DeploySchema(with_index).ok());
  ASSERT_TRUE(committer_->Commit(deploy.Prepare()).ok());
  const TenantMetadata& after = committer_->Latest()->metadata();
  EXPECT_EQ(after.FindTable("messages")->by_id, before.FindTable("messages")->by_id);
  EXPECT_EQ(after.FindTable("messages")->FindIndex("by_channel")->id,
            before.FindTable("messages")->FindIndex("by_channel")->id);
  EXPECT_EQ(after.schema(), with_index);
  EXPECT_THAT(Bodies(Begin().Query({.table = "messages", .index = "by_likes"}).value()),
              ElementsAre("y", "x"));
}

TEST_F(TransactionTest, DeployRefusesSchemasExistingDocumentsDoNotFit) {
  InsertMessages({{"a", "x", 2}});
  auto strict = Schema::FromJson(R"({"tables": {
      "accounts": {}, "notes": {},
      "messages": {"fields": {"channel": "string", "body": "int64", "likes": "int64?"}}}})");
  ASSERT_TRUE(strict.ok());
  Transaction deploy = Begin();
  absl::Status s = deploy.DeploySchema(*strict);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("does not fit the new schema"));
  EXPECT_FALSE(deploy.has_writes());

  auto dropped = Schema::FromJson(R"({"tables": {"accounts": {}, "notes": {}}})");
  s = deploy.DeploySchema(*dropped);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot drop table 'messages'"));
  EXPECT_FALSE(deploy.has_writes());
}

TEST_F(TransactionTest, ModulesAndStateLiveInMetadata) {
  Transaction txn = Begin();
  ASSERT_TRUE(txn.PutModule("chat.js", "export const x = 1;").ok());
  ASSERT_TRUE(txn.SetEnabled(false).ok());
  EXPECT_FALSE(txn.metadata().enabled());
  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  auto snapshot = committer_->Latest();
  EXPECT_FALSE(snapshot->metadata().enabled());
  EXPECT_EQ(snapshot->metadata().modules().at("chat.js"), "export const x = 1;");
  // A fresh load from storage decodes the same metadata.
  auto loaded = Snapshot::Load(storage_, "t", snapshot->ts());
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ((*loaded)->metadata().modules(), snapshot->metadata().modules());
  EXPECT_EQ((*loaded)->metadata().tables(), snapshot->metadata().tables());
  Transaction remove = Begin();
  ASSERT_TRUE(remove.DeleteModule("chat.js").ok());
  ASSERT_TRUE(remove.SetEnabled(true).ok());
  ASSERT_TRUE(committer_->Commit(remove.Prepare()).ok());
  EXPECT_TRUE(committer_->Latest()->metadata().modules().empty());
  EXPECT_TRUE(committer_->Latest()->metadata().enabled());
}

// A deploy replaces the whole module set in one step: modules it leaves out
// are gone, the others hold the new sources, and a bad path writes nothing.
TEST_F(TransactionTest, ReplaceModulesMakesTheSetTheWholeCode) {
  Transaction first = Begin();
  ASSERT_TRUE(first.PutModule("a.js", "export const a = 1;").ok());
  ASSERT_TRUE(first.PutModule("b.js", "export const b = 1;").ok());
  ASSERT_TRUE(committer_->Commit(first.Prepare()).ok());

  Transaction bad = Begin();
  absl::Status s = bad.ReplaceModules({{"", "x"}, {"c.js", "export const c = 1;"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(bad.has_writes());

  Transaction txn = Begin();
  const std::map<std::string, std::string> next = {{"b.js", "export const b = 2;"},
                                                   {"c.js", "export const c = 1;"}};
  ASSERT_TRUE(txn.ReplaceModules(next).ok());
  auto as_map = [](const auto& modules) {
    return std::map<std::string, std::string>(modules.begin(), modules.end());
  };
  EXPECT_EQ(as_map(txn.metadata().modules()), next);  // seen inside the transaction
  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  EXPECT_EQ(as_map(committer_->Latest()->metadata().modules()), next);
}

// The exports a deploy recorded (TenantMetadata::functions) hold for the modules they were
// recorded with: they are stored and loaded with the metadata, kept by other system writes,
// and dropped by any change of a module, which they would no longer describe.
TEST_F(TransactionTest, RecordedFunctionsLastUntilAModuleChanges) {
  const Value functions =
      Value::FromObject({{"a:f", Value::FromObject({{"kind", Value::String("mutation")},
                                                    {"attributes", Value()},
                                                    {"args", Value()}})}});
  Transaction txn = Begin();
  ASSERT_TRUE(txn.PutModule("a.js", "export const f = 1;").ok());
  EXPECT_EQ(txn.SetFunctions(Value::String("x")).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(txn.SetFunctions(functions).ok());
  EXPECT_EQ(txn.metadata().functions(), functions);  // seen inside the transaction
  ASSERT_TRUE(committer_->Commit(txn.Prepare()).ok());
  EXPECT_EQ(committer_->Latest()->metadata().functions(), functions);
  auto loaded = Snapshot::Load(storage_, "t", committer_->Latest()->ts());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->metadata().functions(), functions);

  Transaction disable = Begin();
  ASSERT_TRUE(disable.SetEnabled(false).ok());
  ASSERT_TRUE(committer_->Commit(disable.Prepare()).ok());
  EXPECT_EQ(committer_->Latest()->metadata().functions(), functions) << "no module changed";

  using Change = std::function<absl::Status(Transaction&)>;
  for (const Change& change :
       {Change([](Transaction& t) { return t.PutModule("b.js", "export const g = 1;"); }),
        Change([](Transaction& t) { return t.DeleteModule("a.js"); }), Change([](Transaction& t) {
          return t.ReplaceModules({{"a.js", "export const f = 2;"}});
        })}) {
    Transaction record = Begin();
    ASSERT_TRUE(record.SetFunctions(functions).ok());
    ASSERT_TRUE(committer_->Commit(record.Prepare()).ok());
    Transaction next = Begin();
    ASSERT_TRUE(change(next).ok());
    EXPECT_FALSE(next.metadata().functions().has_value());
    ASSERT_TRUE(committer_->Commit(next.Prepare()).ok());
    EXPECT_FALSE(committer_->Latest()->metadata().functions().has_value());
    auto reloaded = Snapshot::Load(storage_, "t", committer_->Latest()->ts());
    ASSERT_TRUE(reloaded.ok()) << reloaded.status();
    EXPECT_FALSE((*reloaded)->metadata().functions().has_value());
  }
}

}  // namespace
}  // namespace txfn
