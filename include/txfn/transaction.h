// txfn/transaction.h — one function's unit of work, begun at a Snapshot.
//
// A Transaction reads documents and index ranges at its snapshot, records
// every range it read (its read set), buffers its writes (reads see them,
// range scans included), validates them against the tenant's schema, and
// maintains every index of each document it writes. Prepare() turns it into a
// PreparedCommit: plain data a committer validates and persists — possibly in
// another process.
//
//   txfn::Transaction txn(committer->Latest());
//   TXFN_ASSIGN_OR_RETURN(std::string id,
//       txn.Insert("messages", txfn::Value::FromObject({{"channel", txfn::Value::String("a")}})));
//   TXFN_ASSIGN_OR_RETURN(txfn::QueryPage page, txn.Query({.table = "messages",
//       .index = "by_channel", .eq = {txfn::Value::String("a")}, .limit = 10}));
//   txfn::PreparedCommit commit = txn.Prepare();
//   TXFN_ASSIGN_OR_RETURN(txfn::Timestamp ts, committer->Commit(std::move(commit)));
//
// Read sets: a point read records a one-key range, so a later insert of that
// key conflicts (phantoms included); a range read that stopped at its limit
// records only the part of the range it covered. Every document write
// rewrites all of the table's index entries (old and new keys), so any change
// to a document a range read returned conflicts with that read. A transaction
// that writes also reads the tenant's whole metadata index, so a concurrent
// deploy or disable conflicts with it.
//
// Errors: InvalidArgument for bad input (malformed id, schema violation,
// writes in a read-only transaction), NotFound for a missing table, index or
// document to patch/replace/delete, ResourceExhausted naming the limit when
// one of TransactionLimits is exceeded (the transaction must then be
// abandoned), Unavailable from storage, FailedPrecondition for a read of a
// snapshot older than the tenant's retention horizon (restart the transaction
// at a newer one). A failed call changes nothing.
//
// Thread safety: none. A Transaction belongs to one function invocation; use
// it from one thread at a time.
#ifndef TXFN_TRANSACTION_H_
#define TXFN_TRANSACTION_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "txfn/schema.h"
#include "txfn/snapshot.h"
#include "txfn/storage.h"
#include "txfn/value.h"

namespace txfn {

// Per-transaction limits (Convex's defaults).
struct TransactionLimits {
  size_t max_documents_read = 32'000;
  size_t max_bytes_read = size_t{16} << 20;
  size_t max_documents_written = 8'000;
  size_t max_bytes_written = size_t{16} << 20;
  size_t max_read_ranges = 4'096;
  DocumentLimits document;
};

struct TransactionOptions {
  TransactionLimits limits;
  // Document ids are unique whatever the options: each transaction draws the
  // random part of its ids from its own generator, seeded by the operating
  // system's entropy (and Insert checks that the id is free, see there).
  // For deterministic replays only, a caller asks explicitly: with
  // deterministic_ids, ids come from `id_seed` (0 if unset) alone, so the same
  // seed, snapshot and calls give the same ids — and two transactions given
  // the same seed draw the same ids, whose inserts then conflict (Aborted).
  std::optional<uint64_t> id_seed;
  bool deterministic_ids = false;
  // A query: every write fails with InvalidArgument.
  bool read_only = false;
  // The time the transaction's code sees (now()), in nanoseconds since the Unix epoch: the
  // time its run began, on the committers' clock. 0, or earlier than the begin timestamp:
  // the begin timestamp (the tenant's last commit when the snapshot was taken, which may be
  // long ago).
  Timestamp now = 0;
};

// One side of an index range on the field after the equality prefix.
struct IndexBound {
  Value value;
  bool inclusive = true;
};

// A read of one index: documents whose first eq.size() index fields equal
// `eq`, and whose next field lies within lower/upper, in index order.
// index "by_id" (the default) reads the whole table in id order and takes no
// eq or bounds.
struct IndexQuery {
  std::string table;
  std::string index = std::string(kByIdIndexName);
  std::vector<Value> eq;
  std::optional<IndexBound> lower;
  std::optional<IndexBound> upper;
  ScanOrder order = ScanOrder::kAscending;
  size_t limit = 0;    // 0 = every match
  std::string cursor;  // QueryPage::cursor of the previous page; empty = from the start
};

struct QueryPage {
  std::vector<Value> documents;
  // Opaque position after the last document returned; pass it as
  // IndexQuery::cursor to continue. Stable under concurrent inserts.
  std::string cursor;
  bool done = false;  // true when the range has no more documents
};

// One range a transaction read: keys of `index` within `range`. A point read
// is a one-key range (KeyRange::Point), so a later insert of that key — a
// phantom — conflicts too.
struct ReadRange {
  IndexId index = 0;
  KeyRange range;
  friend bool operator==(const ReadRange&, const ReadRange&) = default;
};

// Everything a committer needs from a transaction. Plain data: it may be
// serialised and committed elsewhere.
// The first of the index ids txfn keeps for its own records (see
// Transaction::GetReserved); table and index ids are allocated below it.
inline constexpr IndexId kFirstReservedIndex = 0xffffff00u;

struct PreparedCommit {
  std::string tenant;
  Timestamp begin_ts = 0;
  std::vector<ReadRange> reads;
  std::vector<IndexWrite> writes;  // sorted by (index, key); no duplicates
  friend bool operator==(const PreparedCommit&, const PreparedCommit&) = default;
};

struct TransactionStats {
  size_t documents_read = 0;
  size_t bytes_read = 0;
  size_t documents_written = 0;
  size_t bytes_written = 0;
  size_t read_ranges = 0;
};

class Transaction {
 public:
  explicit Transaction(std::shared_ptr<const Snapshot> snapshot, TransactionOptions options = {});
  Transaction(Transaction&&) = default;
  Transaction& operator=(Transaction&&) = default;

  Timestamp begin_ts() const { return snapshot_->ts(); }
  // TransactionOptions::now, never before begin_ts(): Date.now() in its code, and the time of
  // the documents it inserts (their _creationTime, in ms, and the time part of their ids).
  Timestamp now() const { return std::max(options_.now, begin_ts()); }
  const std::string& tenant() const { return snapshot_->tenant(); }
  const Snapshot& snapshot() const { return *snapshot_; }
  // The metadata as this transaction sees it (its own deploys included).
  const TenantMetadata& metadata() const { return *metadata_; }

  // ---- Reads ----
  // The document, or nullopt if it does not exist (a missing document is a
  // read too: inserting it later conflicts).
  [[nodiscard]] absl::StatusOr<std::optional<Value>> Get(std::string_view id);
  [[nodiscard]] absl::StatusOr<QueryPage> Query(const IndexQuery& query);

  // ---- Document writes ----
  // Returns the new document's id. `doc` must be an object without system
  // fields; it is validated against the schema. The id is checked to be free
  // (in the snapshot and in this transaction's writes; a taken one is never
  // reused, another is drawn) and that check is a point read, so two racing
  // inserts of one id conflict instead of one replacing the other. The read is
  // not counted against max_read_ranges (max_documents_written bounds it).
  [[nodiscard]] absl::StatusOr<std::string> Insert(std::string_view table, const Value& doc);
  // Inserts a document as `txfn export` wrote it, keeping its identity: `doc`
  // carries its _id (which must name `table`: InvalidArgument otherwise) and
  // _creationTime (a number) besides its fields, which are validated like
  // Insert's. AlreadyExists if a document with that id exists. For imports
  // and restores.
  [[nodiscard]] absl::Status ImportDocument(std::string_view table, const Value& doc);
  // Sets the given top-level fields and removes those named in `remove` (as Convex's
  // patch does with fields set to undefined), keeping the others. A field both removed and
  // set is set. A name starting with '_' in either is InvalidArgument; the result is
  // validated against the schema (removing a required field is InvalidArgument naming it).
  [[nodiscard]] absl::Status Patch(std::string_view id, const Value& fields,
                                   absl::Span<const std::string> remove = {});
  // Replaces every user field; _id and _creationTime are kept.
  [[nodiscard]] absl::Status Replace(std::string_view id, const Value& doc);
  [[nodiscard]] absl::Status Delete(std::string_view id);

  // ---- System writes (deploys) ----
  // Installs `schema`: allocates ids for new tables and indexes, backfills new
  // indexes from existing documents, and checks that every existing document
  // fits the new schema (InvalidArgument naming the first that does not).
  // Dropping a table that still has documents is FailedPrecondition.
  [[nodiscard]] absl::Status DeploySchema(const Schema& schema);
  [[nodiscard]] absl::Status PutModule(std::string_view path, std::string_view source);
  [[nodiscard]] absl::Status DeleteModule(std::string_view path);
  // Makes `modules` (path -> source) the tenant's whole code: the modules not
  // in it are deleted. The metadata is rebuilt once for the set (PutModule
  // rebuilds it per module, quadratic in a deploy's module count).
  // InvalidArgument for an empty path, with nothing written.
  [[nodiscard]] absl::Status ReplaceModules(const std::map<std::string, std::string>& modules);
  [[nodiscard]] absl::Status SetEnabled(bool enabled);
  // Records `functions` (an object) as the exports of the modules as they are
  // now (TenantMetadata::functions; txfn/deploy.h RecordFunctions makes it).
  // PutModule, DeleteModule and ReplaceModules drop what was recorded.
  [[nodiscard]] absl::Status SetFunctions(const Value& functions);

  // ---- Reserved entries (txfn's own per-tenant records) ----
  // Indexes from kFirstReservedIndex up hold txfn's records (idempotency
  // keys, scheduled calls: <txfn/call_records.h>), never documents. These
  // read and write one entry of such an index, in this transaction.
  // GetReserved records a point read (so a racing writer of the entry
  // conflicts); PutReserved writes the entry (nullopt deletes it), counted
  // against bytes written (the value's size) like a document write.
  // InvalidArgument for an index below kFirstReservedIndex or an empty key;
  // PutReserved also for a read-only transaction.
  [[nodiscard]] absl::StatusOr<std::optional<std::string>> GetReserved(IndexId index,
                                                                       std::string_view key);
  [[nodiscard]] absl::Status PutReserved(IndexId index, std::string_view key,
                                         std::optional<std::string> value);

  // ---- Results ----
  const std::vector<ReadRange>& read_set() const { return reads_; }
  bool has_writes() const;
  const TransactionStats& stats() const { return stats_; }
  // The commit request. Read-only transactions produce one with no writes,
  // which a committer accepts without a new timestamp.
  [[nodiscard]] PreparedCommit Prepare() const;

 private:
  using Overlay = absl::btree_map<std::string, std::optional<std::string>>;
  struct MergedScan {
    std::vector<IndexEntry> entries;
    bool exhausted = false;
    // The last key merged (a stored entry or an own write, returned or deleted); empty if none.
    // Nothing in the range before it is left: a next page starts after it.
    std::string last_key;
  };

  absl::Status CheckWritable() const;
  // `counted`: whether it counts against max_read_ranges.
  absl::Status RecordRead(IndexId index, KeyRange range, bool counted = true);
  // Records the read of `id` in `table` and returns whether it is free.
  absl::StatusOr<bool> IdIsFree(const TableInfo& table, std::string_view id);
  absl::Status CountDocumentRead(size_t bytes);
  // Storage entries at the snapshot with this transaction's writes applied: at most `limit`
  // (0: all) read from storage, so fewer than `limit` may come back while not exhausted (own
  // deletes); continue after last_key.
  absl::StatusOr<MergedScan> ScanMerged(IndexId index, const KeyRange& range, ScanOrder order,
                                        size_t limit) const;
  absl::StatusOr<std::optional<std::string>> GetMerged(IndexId index, std::string_view key) const;
  absl::StatusOr<std::optional<Value>> ReadDocument(std::string_view id, const TableInfo** table);
  absl::StatusOr<Value> ReadExisting(std::string_view id, const TableInfo** table);
  absl::Status ValidateUserFields(std::string_view table, const Value& doc) const;
  // Buffers a document change and its index maintenance.
  absl::Status WriteDocument(const TableInfo& table, std::string_view id,
                             const std::optional<Value>& old_doc,
                             const std::optional<Value>& new_doc);
  absl::Status WriteMetadata(std::string_view key, std::optional<std::string> value);
  absl::Status ReloadMetadata();
  // Drops the recorded functions (TenantMetadata::functions), when the modules change.
  absl::Status ForgetFunctions();
  absl::Status DeploySchemaWrites(const Schema& schema);
  std::string NewId(IndexId table);

  std::shared_ptr<const Snapshot> snapshot_;
  TransactionOptions options_;
  std::shared_ptr<const TenantMetadata> metadata_;
  absl::flat_hash_map<IndexId, Overlay> overlay_;
  absl::flat_hash_set<std::string> written_ids_;
  std::vector<ReadRange> reads_;
  size_t counted_reads_ = 0;  // reads_ that count against max_read_ranges
  TransactionStats stats_;
  std::optional<absl::BitGen> id_gen_;  // made on the first insert
  uint16_t ids_made_ = 0;               // numbers this transaction's ids (NewId)
};

// The key of `doc` (whose id is `id`) in a secondary index on `fields`: the
// key encoding of each field (kKeyAbsentField for a missing one), then of the
// id as a string.
std::string SecondaryIndexKey(const std::vector<std::string>& fields, const Value& doc,
                              std::string_view id);

}  // namespace txfn

#endif  // TXFN_TRANSACTION_H_
