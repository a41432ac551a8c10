// Transaction: reads with a read set, buffered writes, index maintenance
// (txfn/transaction.h).
#include "txfn/transaction.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "txfn/errors.h"
#include "txfn/internal/strings.h"
#include "txfn/status_macros.h"

namespace txfn {
namespace {

constexpr std::string_view kIdField = "_id";
constexpr std::string_view kCreationTimeField = "_creationTime";

// Narrows `range` to what lies strictly after (ascending) or before
// (descending) the cursor key.
KeyRange ApplyCursor(KeyRange range, std::string_view cursor, ScanOrder order) {
  if (cursor.empty()) return range;
  if (order == ScanOrder::kAscending) {
    std::string after = KeyRange::After(cursor).start;
    if (after > range.start) range.start = std::move(after);
  } else if (!range.end.has_value() || cursor < *range.end) {
    range.end = std::string(cursor);
  }
  return range;
}

// Entries a query reads from storage at a time: a page holds at most this many documents of up to
// 1 MiB (DocumentLimits) before the read limits count them. A query of fewer (take(10), a
// paginate() of 50) reads one page, as it did.
constexpr size_t kQueryScanPage = 64;

absl::Status LimitError(Limit which, std::string_view limit, size_t value) {
  return WithLimit(absl::ResourceExhaustedError(
                       internal::StrCat("transaction limit exceeded: ", limit, " (", value, ")")),
                   which);
}

}  // namespace

std::string SecondaryIndexKey(const std::vector<std::string>& fields, const Value& doc,
                              std::string_view id) {
  std::string key;
  for (const std::string& field : fields) {
    const Value* v = doc.FindPath(field);
    if (v == nullptr) {
      key.push_back(kKeyAbsentField);
    } else {
      AppendKey(*v, &key);
    }
  }
  AppendKey(Value::String(std::string(id)), &key);
  return key;
}

Transaction::Transaction(std::shared_ptr<const Snapshot> snapshot, TransactionOptions options)
    : snapshot_(std::move(snapshot)), options_(options), metadata_(snapshot_->shared_metadata()) {}

// ---- Bookkeeping ---------------------------------------------------------------

absl::Status Transaction::CheckWritable() const {
  if (options_.read_only) {
    return absl::InvalidArgumentError("a read-only transaction (query) cannot write");
  }
  return absl::OkStatus();
}

// Range bounds up to this size (index values of ordinary size) are not
// counted as bytes read.
constexpr size_t kFreeBoundBytes = 1024;

absl::Status Transaction::RecordRead(IndexId index, KeyRange range, bool counted) {
  if (counted) {
    if (counted_reads_ >= options_.limits.max_read_ranges) {
      return LimitError(Limit::kReadRanges, "index ranges read", options_.limits.max_read_ranges);
    }
    ++counted_reads_;
    // A range with big bounds (an eq() on a 4 MB string) is kept, with its
    // copies, until the commit: big bounds count as bytes read. (Small ones,
    // those of nearly every read, do not, so bytes_read stays the documents'.)
    const size_t bound_bytes = range.start.size() + (range.end ? range.end->size() : 0);
    if (bound_bytes > kFreeBoundBytes) {
      if (stats_.bytes_read + bound_bytes > options_.limits.max_bytes_read) {
        return LimitError(Limit::kBytesRead, "bytes read (documents and range bounds)",
                          options_.limits.max_bytes_read);
      }
      stats_.bytes_read += bound_bytes;
    }
  }
  reads_.push_back({.index = index, .range = std::move(range)});
  stats_.read_ranges = reads_.size();
  return absl::OkStatus();
}

absl::Status Transaction::CountDocumentRead(size_t bytes) {
  if (stats_.documents_read + 1 > options_.limits.max_documents_read) {
    return LimitError(Limit::kDocumentsRead, "documents read", options_.limits.max_documents_read);
  }
  if (stats_.bytes_read + bytes > options_.limits.max_bytes_read) {
    return LimitError(Limit::kBytesRead, "bytes read", options_.limits.max_bytes_read);
  }
  ++stats_.documents_read;
  stats_.bytes_read += bytes;
  return absl::OkStatus();
}

bool Transaction::has_writes() const {
  return std::any_of(overlay_.begin(), overlay_.end(),
                     [](const auto& entry) { return !entry.second.empty(); });
}

std::string Transaction::NewId(IndexId table) {
  // 6 bytes of now() in milliseconds (big-endian), 2 of the id's number in this
  // transaction, then 8 random bytes: new ids sort after older ones, so ordered structures
  // keyed by id (storage B-trees, the conflict set) append instead of inserting at random
  // places; a transaction's ids sort in the order it made them (with only random bytes after
  // the time, the documents one mutation inserted came back from by_id in a random order, and
  // `.first()` was a different one on each run); and 64 random bits keep ids unguessable.
  // Past 65,536 ids in one transaction the number wraps: ids stay unique, not ordered.
  if (!id_gen_.has_value()) {
    if (options_.deterministic_ids) {
      const uint64_t seed = options_.id_seed.value_or(0);
      std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
      id_gen_.emplace(seq);
    } else {
      // This transaction's own entropy: ids never depend on a caller's seed
      // (two requests given the same seed used to draw the same ids).
      id_gen_.emplace();
    }
  }
  std::string bytes(16, '\0');
  const uint64_t ms = now() / 1'000'000;
  for (size_t b = 0; b < 6; ++b) bytes[b] = static_cast<char>(ms >> (8 * (5 - b)));
  const uint16_t number = ids_made_++;
  bytes[6] = static_cast<char>(number >> 8);
  bytes[7] = static_cast<char>(number);
  const uint64_t random = absl::Uniform<uint64_t>(*id_gen_);
  for (size_t b = 0; b < 8; ++b) bytes[8 + b] = static_cast<char>(random >> (8 * b));
  return MakeDocumentId(table, bytes);
}

// ---- Merged reads ----------------------------------------------------------------

absl::StatusOr<std::optional<std::string>> Transaction::GetMerged(IndexId index,
                                                                  std::string_view key) const {
  if (auto ov = overlay_.find(index); ov != overlay_.end()) {
    if (auto it = ov->second.find(internal::ToAbsl(key)); it != ov->second.end()) {
      return it->second;
    }
  }
  TXFN_ASSIGN_OR_RETURN(std::optional<IndexEntry> entry, snapshot_->Get(index, key));
  if (!entry.has_value()) return std::nullopt;
  return std::move(entry->value);
}

absl::StatusOr<Transaction::MergedScan> Transaction::ScanMerged(IndexId index,
                                                                const KeyRange& range,
                                                                ScanOrder order,
                                                                size_t limit) const {
  // Storage gives `limit` entries at most: the transaction's own writes are merged up to the last
  // of them only (asking for `limit` more per own write in the range loaded every stored entry
  // a mutation's own thousand inserts could shadow, and listed every such write again for each
  // page of a query).
  TXFN_ASSIGN_OR_RETURN(std::vector<IndexEntry> stored,
                        snapshot_->Scan(index, range, order, limit));
  const bool storage_exhausted = limit == 0 || stored.size() < limit;
  auto before = [order](std::string_view a, std::string_view b) {
    return order == ScanOrder::kAscending ? a < b : a > b;
  };
  static const Overlay kNoWrites;
  const Overlay* writes = &kNoWrites;
  if (auto ov = overlay_.find(index); ov != overlay_.end()) writes = &ov->second;
  Overlay::const_iterator first = writes->end(), end = writes->end();
  if (!range.IsEmpty()) {
    first = writes->lower_bound(range.start);
    if (range.end.has_value()) end = writes->lower_bound(*range.end);
  }
  // An own write is known to come next only up to the last stored entry read, unless storage
  // had nothing more to give (a copy: the merge moves stored entries out).
  const std::optional<std::string> own_bound =
      storage_exhausted ? std::nullopt : std::optional<std::string>(stored.back().key);
  MergedScan out;
  // Merges [own, own_end): this transaction's writes in the range, in scan order.
  auto merge = [&](auto own, const auto own_end) {
    size_t s = 0;
    bool last_is_own = false;
    auto last_own = own;
    while (limit == 0 || out.entries.size() < limit) {
      const bool have_stored = s < stored.size();
      const bool have_own = own != own_end && (!own_bound || !before(*own_bound, own->first));
      if (!have_stored && !have_own) break;
      if (have_own && (!have_stored || !before(stored[s].key, own->first))) {
        if (have_stored && stored[s].key == own->first) ++s;  // replaced or deleted
        if (own->second.has_value()) {
          out.entries.push_back({.key = own->first, .value = *own->second, .ts = 0});
        }
        last_is_own = true;
        last_own = own++;
      } else {
        last_is_own = false;
        out.entries.push_back(std::move(stored[s++]));
      }
    }
    if (last_is_own) {
      out.last_key = last_own->first;
    } else if (s > 0) {
      out.last_key = out.entries.back().key;
    }
    out.exhausted = storage_exhausted && s == stored.size() && own == own_end;
  };
  if (order == ScanOrder::kAscending) {
    merge(first, end);
  } else {
    merge(std::make_reverse_iterator(end), std::make_reverse_iterator(first));
  }
  return out;
}

// ---- Reads -------------------------------------------------------------------------

absl::StatusOr<std::optional<Value>> Transaction::ReadDocument(std::string_view id,
                                                               const TableInfo** table) {
  TXFN_ASSIGN_OR_RETURN(IndexId by_id, DocumentIdTable(id));
  const TableInfo* info = metadata_->FindTableById(by_id);
  if (info == nullptr) {
    return absl::InvalidArgumentError(internal::StrCat("document id '", id, "' names no table"));
  }
  if (table != nullptr) *table = info;
  TXFN_RETURN_IF_ERROR(RecordRead(by_id, KeyRange::Point(id)));
  TXFN_ASSIGN_OR_RETURN(std::optional<std::string> encoded, GetMerged(by_id, id));
  if (!encoded.has_value()) return std::nullopt;
  TXFN_RETURN_IF_ERROR(CountDocumentRead(encoded->size()));
  TXFN_ASSIGN_OR_RETURN(Value doc, DecodeBinary(*encoded));
  return doc;
}

absl::StatusOr<std::optional<Value>> Transaction::Get(std::string_view id) {
  return ReadDocument(id, nullptr);
}

absl::StatusOr<QueryPage> Transaction::Query(const IndexQuery& query) {
  const TableInfo* table = metadata_->FindTable(query.table);
  if (table == nullptr) {
    return absl::NotFoundError(internal::StrCat("table '", query.table, "' does not exist"));
  }
  IndexId index_id = table->by_id;
  KeyRange range = KeyRange::All();
  bool by_id = query.index == kByIdIndexName;
  if (by_id) {
    if (!query.eq.empty() || query.lower.has_value() || query.upper.has_value()) {
      return absl::InvalidArgumentError("index by_id takes no range; use Get(id) for one document");
    }
  } else {
    const IndexInfo* index = table->FindIndex(query.index);
    if (index == nullptr) {
      return absl::NotFoundError(
          internal::StrCat("table '", query.table, "' has no index '", query.index, "'"));
    }
    size_t bounded = query.eq.size() + (query.lower || query.upper ? 1 : 0);
    if (bounded > index->fields.size()) {
      return absl::InvalidArgumentError(internal::StrCat("index '", query.index, "' has ",
                                                         index->fields.size(),
                                                         " fields; the range names ", bounded));
    }
    index_id = index->id;
    std::string prefix;
    for (const Value& v : query.eq) AppendKey(v, &prefix);
    range = KeyRange::Prefix(prefix);
    if (query.lower.has_value()) {
      std::string bound = prefix;
      AppendKey(query.lower->value, &bound);
      if (query.lower->inclusive) {
        range.start = std::move(bound);
      } else if (auto next = PrefixSuccessor(bound)) {
        range.start = *std::move(next);
      } else {
        range = {.start = std::move(bound), .end = ""};  // nothing follows
      }
    }
    if (query.upper.has_value()) {
      std::string bound = prefix;
      AppendKey(query.upper->value, &bound);
      std::optional<std::string> end =
          query.upper->inclusive ? PrefixSuccessor(bound) : std::optional(std::move(bound));
      if (end.has_value() && (!range.end.has_value() || *end < *range.end)) range.end = end;
    }
  }
  range = ApplyCursor(std::move(range), query.cursor, query.order);
  if (range.IsEmpty()) {
    TXFN_RETURN_IF_ERROR(RecordRead(index_id, range));
    return QueryPage{.cursor = query.cursor, .done = true};
  }

  // A scan's entries at a time, each counted against the read limits before the next are
  // read: a collect() or take(2^30) of a table of 1,200 documents of 1 MiB loaded all 1.2 GB
  // (uninterruptible C++, as long as the table is big) before the limits saw the first.
  QueryPage page;
  page.cursor = query.cursor;
  KeyRange rest = range;
  bool exhausted = false, advanced = false;
  for (;;) {
    size_t want = kQueryScanPage;
    if (query.limit != 0) want = std::min(want, query.limit - page.documents.size());
    // One past what the documents-read limit allows: its read fails as it should.
    const size_t documents_left = options_.limits.max_documents_read - stats_.documents_read;
    if (documents_left < want) want = documents_left + 1;
    TXFN_ASSIGN_OR_RETURN(MergedScan scan, ScanMerged(index_id, rest, query.order, want));
    for (IndexEntry& entry : scan.entries) {
      std::string encoded;
      if (by_id) {
        encoded = std::move(entry.value);
      } else {
        // The entry's value is the document id; the document itself is covered
        // by the index range (every document write rewrites its index keys).
        TXFN_ASSIGN_OR_RETURN(std::optional<std::string> doc, GetMerged(table->by_id, entry.value));
        if (!doc.has_value()) {
          return absl::InternalError(internal::StrCat(
              "index '", query.index, "' points at missing document ", entry.value));
        }
        encoded = *std::move(doc);
      }
      TXFN_RETURN_IF_ERROR(CountDocumentRead(encoded.size()));
      TXFN_ASSIGN_OR_RETURN(Value doc, DecodeBinary(encoded));
      page.documents.push_back(std::move(doc));
    }
    // The cursor is the last key merged, returned or not (a stored entry this transaction
    // deleted): the next page starts after it, and the read covers it.
    const bool moved = !scan.last_key.empty();  // always, unless exhausted
    if (moved) {
      page.cursor = std::move(scan.last_key);
      advanced = true;
    }
    if (scan.exhausted) {
      exhausted = true;
      break;
    }
    if (!moved || (query.limit != 0 && page.documents.size() == query.limit)) break;
    rest = ApplyCursor(range, page.cursor, query.order);
  }
  // Record only what the scan covered.
  KeyRange covered = range;
  if (!exhausted && advanced) {
    if (query.order == ScanOrder::kAscending) {
      covered = KeyRange::Closed(covered.start, page.cursor);
    } else {
      covered.start = page.cursor;
    }
  }
  TXFN_RETURN_IF_ERROR(RecordRead(index_id, std::move(covered)));
  page.done = exhausted;
  return page;
}

// ---- Document writes -----------------------------------------------------------------

absl::Status Transaction::ValidateUserFields(std::string_view table, const Value& doc) const {
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(internal::StrCat("table '", table,
                                                       "': a document must be an "
                                                       "object, got ",
                                                       ValueTypeName(doc.type())));
  }
  for (const auto& [name, value] : doc.object()) {
    if (name.starts_with('_')) {
      return absl::InvalidArgumentError(
          internal::StrCat("table '", table, "': field '", name, "' is reserved for the system"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> Transaction::ReadExisting(std::string_view id, const TableInfo** table) {
  TXFN_ASSIGN_OR_RETURN(std::optional<Value> doc, ReadDocument(id, table));
  if (!doc.has_value())
    return absl::NotFoundError(internal::StrCat("document ", id, " does not exist"));
  return *std::move(doc);
}

absl::Status Transaction::WriteDocument(const TableInfo& table, std::string_view id,
                                        const std::optional<Value>& old_doc,
                                        const std::optional<Value>& new_doc) {
  size_t bytes = new_doc.has_value() ? new_doc->ByteSize() : 0;
  bool new_id = !written_ids_.contains(internal::ToAbsl(id));
  if (new_id && written_ids_.size() + 1 > options_.limits.max_documents_written) {
    return LimitError(Limit::kDocumentsWritten, "documents written",
                      options_.limits.max_documents_written);
  }
  auto over_limit = [&] {
    return stats_.bytes_written + bytes > options_.limits.max_bytes_written;
  };
  if (over_limit()) {
    return LimitError(Limit::kBytesWritten, "bytes written", options_.limits.max_bytes_written);
  }
  // The index entries are written too, each with its fields' values: a big
  // value under many indexes costs as much as many documents (counted, and
  // refused at the limit before the next key is made).
  struct IndexChange {
    std::optional<std::string> old_key, new_key;
  };
  std::vector<IndexChange> changes;
  changes.reserve(table.indexes.size());
  for (const IndexInfo& index : table.indexes) {
    IndexChange& c = changes.emplace_back();
    if (old_doc.has_value()) c.old_key = SecondaryIndexKey(index.fields, *old_doc, id);
    if (new_doc.has_value()) c.new_key = SecondaryIndexKey(index.fields, *new_doc, id);
    if (c.new_key != c.old_key) {  // a new entry, and a tombstone for the old one
      if (c.new_key.has_value()) bytes += c.new_key->size();
      if (c.old_key.has_value()) bytes += c.old_key->size();
    }
    if (over_limit()) {
      return LimitError(Limit::kBytesWritten, "bytes written (documents and their index entries)",
                        options_.limits.max_bytes_written);
    }
  }
  if (new_id) written_ids_.emplace(id);
  stats_.documents_written = written_ids_.size();
  stats_.bytes_written += bytes;

  overlay_[table.by_id][std::string(id)] =
      new_doc.has_value() ? std::optional(EncodeBinary(*new_doc)) : std::nullopt;
  for (size_t i = 0; i < changes.size(); ++i) {
    Overlay& entries = overlay_[table.indexes[i].id];
    IndexChange& c = changes[i];
    if (c.old_key.has_value() && c.old_key != c.new_key) entries[*c.old_key] = std::nullopt;
    if (c.new_key.has_value()) entries[*std::move(c.new_key)] = std::string(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Transaction::Insert(std::string_view table, const Value& doc) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const TableInfo* info = metadata_->FindTable(table);
  if (info == nullptr) {
    return absl::NotFoundError(internal::StrCat("table '", table, "' does not exist"));
  }
  TXFN_RETURN_IF_ERROR(ValidateUserFields(table, doc));
  TXFN_RETURN_IF_ERROR(metadata_->schema().ValidateDocument(table, doc, options_.limits.document));
  // 64 random bits make a taken id all but impossible; with deterministic ids
  // (a replay) a concurrent transaction may have taken it.
  constexpr int kMaxIdDraws = 8;
  std::string id;
  for (int draw = 1;; ++draw) {
    id = NewId(info->by_id);
    TXFN_ASSIGN_OR_RETURN(bool free, IdIsFree(*info, id));
    if (free) break;
    if (draw == kMaxIdDraws) {
      return absl::InternalError(internal::StrCat("table '", table, "': ", kMaxIdDraws,
                                                  " document ids drawn were all taken"));
    }
  }
  Value::Object fields = doc.object();
  fields.emplace(kIdField, Value::String(id));
  // Milliseconds since the epoch, as in Convex: when the transaction's run began.
  fields.emplace(kCreationTimeField, Value::Float64(static_cast<double>(now()) / 1e6));
  Value full = Value::FromObject(std::move(fields));
  TXFN_RETURN_IF_ERROR(ValidateDocument(full, options_.limits.document));
  TXFN_RETURN_IF_ERROR(WriteDocument(*info, id, std::nullopt, full));
  return id;
}

absl::StatusOr<bool> Transaction::IdIsFree(const TableInfo& table, std::string_view id) {
  TXFN_RETURN_IF_ERROR(RecordRead(table.by_id, KeyRange::Point(id), /*counted=*/false));
  TXFN_ASSIGN_OR_RETURN(std::optional<std::string> existing, GetMerged(table.by_id, id));
  return !existing.has_value();
}

absl::Status Transaction::ImportDocument(std::string_view table, const Value& doc) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const TableInfo* info = metadata_->FindTable(table);
  if (info == nullptr) {
    return absl::NotFoundError(internal::StrCat("table '", table, "' does not exist"));
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(internal::StrCat(
        "table '", table, "': a document must be an object, got ", ValueTypeName(doc.type())));
  }
  const Value* id = doc.Find(kIdField);
  const Value* created = doc.Find(kCreationTimeField);
  if (id == nullptr || !id->is_string()) {
    return absl::InvalidArgumentError(
        internal::StrCat("table '", table, "': an imported document needs a string ", kIdField));
  }
  if (created == nullptr || !created->is_float64()) {
    return absl::InvalidArgumentError(internal::StrCat(
        "table '", table, "': document ", id->string(), " needs a numeric ", kCreationTimeField));
  }
  TXFN_ASSIGN_OR_RETURN(IndexId id_table, DocumentIdTable(id->string()));
  if (id_table != info->by_id) {
    const TableInfo* other = metadata_->FindTableById(id_table);
    return absl::InvalidArgumentError(internal::StrCat(
        "document id ", id->string(), " names ",
        other != nullptr ? internal::StrCat("table '", other->name, "'") : std::string("no table"),
        ", not table '", table, "'"));
  }
  Value::Object fields = doc.object();
  fields.erase(std::string(kIdField));
  fields.erase(std::string(kCreationTimeField));
  Value user = Value::FromObject(std::move(fields));
  TXFN_RETURN_IF_ERROR(ValidateUserFields(table, user));
  TXFN_RETURN_IF_ERROR(metadata_->schema().ValidateDocument(table, user, options_.limits.document));
  TXFN_RETURN_IF_ERROR(ValidateDocument(doc, options_.limits.document));
  TXFN_ASSIGN_OR_RETURN(bool free, IdIsFree(*info, id->string()));
  if (!free) {
    return absl::AlreadyExistsError(
        internal::StrCat("table '", table, "': document ", id->string(), " already exists"));
  }
  return WriteDocument(*info, id->string(), std::nullopt, doc);
}

absl::Status Transaction::Patch(std::string_view id, const Value& fields,
                                absl::Span<const std::string> remove) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const TableInfo* info = nullptr;
  TXFN_ASSIGN_OR_RETURN(Value old_doc, ReadExisting(id, &info));
  TXFN_RETURN_IF_ERROR(ValidateUserFields(info->name, fields));
  Value::Object merged = old_doc.object();
  for (const std::string& name : remove) {
    if (name.starts_with('_')) {
      return absl::InvalidArgumentError(internal::StrCat("table '", info->name, "': field '", name,
                                                         "' is reserved for the system"));
    }
    merged.erase(name);
  }
  for (const auto& [name, value] : fields.object()) merged.insert_or_assign(name, value);
  Value new_doc = Value::FromObject(std::move(merged));
  TXFN_RETURN_IF_ERROR(
      metadata_->schema().ValidateDocument(info->name, new_doc, options_.limits.document));
  return WriteDocument(*info, id, old_doc, new_doc);
}

absl::Status Transaction::Replace(std::string_view id, const Value& doc) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const TableInfo* info = nullptr;
  TXFN_ASSIGN_OR_RETURN(Value old_doc, ReadExisting(id, &info));
  TXFN_RETURN_IF_ERROR(ValidateUserFields(info->name, doc));
  Value::Object fields = doc.object();
  for (std::string_view system : {kIdField, kCreationTimeField}) {
    if (const Value* v = old_doc.Find(system)) fields.emplace(system, *v);
  }
  Value new_doc = Value::FromObject(std::move(fields));
  TXFN_RETURN_IF_ERROR(
      metadata_->schema().ValidateDocument(info->name, new_doc, options_.limits.document));
  return WriteDocument(*info, id, old_doc, new_doc);
}

absl::Status Transaction::Delete(std::string_view id) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const TableInfo* info = nullptr;
  TXFN_ASSIGN_OR_RETURN(Value old_doc, ReadExisting(id, &info));
  return WriteDocument(*info, id, old_doc, std::nullopt);
}

// ---- System writes -------------------------------------------------------------------

namespace {
absl::Status CheckReserved(IndexId index, std::string_view key) {
  if (index < kFirstReservedIndex) {
    return absl::InvalidArgumentError(internal::StrCat(
        "index ", index, " is not a reserved index (>= ", kFirstReservedIndex, ")"));
  }
  if (key.empty()) return absl::InvalidArgumentError("a reserved entry's key is empty");
  return absl::OkStatus();
}

// The metadata key of module `path`.
std::string ModuleKey(std::string_view path) {
  return internal::StrCat(metadata_keys::kModulePrefix, path);
}
}  // namespace

absl::StatusOr<std::optional<std::string>> Transaction::GetReserved(IndexId index,
                                                                    std::string_view key) {
  TXFN_RETURN_IF_ERROR(CheckReserved(index, key));
  TXFN_RETURN_IF_ERROR(RecordRead(index, KeyRange::Point(key), /*counted=*/false));
  return GetMerged(index, key);
}

absl::Status Transaction::PutReserved(IndexId index, std::string_view key,
                                      std::optional<std::string> value) {
  TXFN_RETURN_IF_ERROR(CheckReserved(index, key));
  TXFN_RETURN_IF_ERROR(CheckWritable());
  const size_t bytes = value.has_value() ? value->size() : 0;
  if (stats_.bytes_written + bytes > options_.limits.max_bytes_written) {
    return LimitError(Limit::kBytesWritten, "bytes written", options_.limits.max_bytes_written);
  }
  stats_.bytes_written += bytes;
  overlay_[index][std::string(key)] = std::move(value);
  return absl::OkStatus();
}

absl::Status Transaction::WriteMetadata(std::string_view key, std::optional<std::string> value) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  overlay_[kMetadataIndex][std::string(key)] = std::move(value);
  return absl::OkStatus();
}

absl::Status Transaction::ReloadMetadata() {
  TXFN_ASSIGN_OR_RETURN(MergedScan scan,
                        ScanMerged(kMetadataIndex, KeyRange::All(), ScanOrder::kAscending, 0));
  TXFN_ASSIGN_OR_RETURN(TenantMetadata metadata, TenantMetadata::FromEntries(scan.entries));
  metadata_ = std::make_shared<const TenantMetadata>(std::move(metadata));
  return absl::OkStatus();
}

absl::Status Transaction::PutModule(std::string_view path, std::string_view source) {
  if (path.empty()) return absl::InvalidArgumentError("module path is empty");
  TXFN_RETURN_IF_ERROR(WriteMetadata(ModuleKey(path), std::string(source)));
  TXFN_RETURN_IF_ERROR(ForgetFunctions());
  return ReloadMetadata();
}

absl::Status Transaction::DeleteModule(std::string_view path) {
  TXFN_RETURN_IF_ERROR(WriteMetadata(ModuleKey(path), std::nullopt));
  TXFN_RETURN_IF_ERROR(ForgetFunctions());
  return ReloadMetadata();
}

absl::Status Transaction::ForgetFunctions() {
  if (!metadata_->functions().has_value()) return absl::OkStatus();
  return WriteMetadata(metadata_keys::kFunctions, std::nullopt);
}

absl::Status Transaction::SetFunctions(const Value& functions) {
  if (!functions.is_object()) return absl::InvalidArgumentError("functions: not an object");
  TXFN_RETURN_IF_ERROR(WriteMetadata(metadata_keys::kFunctions, EncodeBinary(functions)));
  return ReloadMetadata();
}

absl::Status Transaction::ReplaceModules(const std::map<std::string, std::string>& modules) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  if (modules.contains("")) return absl::InvalidArgumentError("module path is empty");
  for (const auto& [path, source] : metadata_->modules()) {
    if (!modules.contains(path)) {
      TXFN_RETURN_IF_ERROR(WriteMetadata(ModuleKey(path), std::nullopt));
    }
  }
  for (const auto& [path, source] : modules) {
    TXFN_RETURN_IF_ERROR(WriteMetadata(ModuleKey(path), source));
  }
  TXFN_RETURN_IF_ERROR(ForgetFunctions());
  return ReloadMetadata();
}

absl::Status Transaction::SetEnabled(bool enabled) {
  TXFN_RETURN_IF_ERROR(WriteMetadata(metadata_keys::kState, enabled ? "enabled" : "disabled"));
  return ReloadMetadata();
}

absl::Status Transaction::DeploySchema(const Schema& schema) {
  TXFN_RETURN_IF_ERROR(CheckWritable());
  // A deploy buffers many writes; a failed one must leave none behind.
  absl::flat_hash_map<IndexId, Overlay> saved = overlay_;
  absl::Status status = DeploySchemaWrites(schema);
  if (!status.ok()) overlay_ = std::move(saved);
  return status;
}

// Documents a deploy reads at a time when it validates or backfills a table: as a query's page,
// at most 64 MiB of them in memory (512 took 512 MiB of a table of 1 MiB documents).
constexpr size_t kDeployPageSize = kQueryScanPage;
// The new index entries a deploy may make (held until it commits): an index
// over a big field of many documents is refused, not built in gigabytes.
constexpr size_t kMaxDeployBackfillBytes = size_t{256} << 20;

absl::Status Transaction::DeploySchemaWrites(const Schema& schema) {
  const TenantMetadata& current = *metadata_;
  IndexId next_id = current.next_id();
  std::vector<std::pair<TableInfo, std::vector<const IndexInfo*>>> planned;  // + indexes to fill
  planned.reserve(schema.tables().size());  // `fill` points into it
  for (const TableSpec& spec : schema.tables()) {
    const TableInfo* existing = current.FindTable(spec.name);
    TableInfo info{.name = spec.name, .by_id = existing ? existing->by_id : next_id++};
    for (const IndexSpec& index : spec.indexes) {
      const IndexInfo* old = existing ? existing->FindIndex(index.name) : nullptr;
      bool same = old != nullptr && old->fields == index.fields;
      info.indexes.push_back(
          {.name = index.name, .id = same ? old->id : next_id++, .fields = index.fields});
    }
    planned.emplace_back(std::move(info), std::vector<const IndexInfo*>{});
    std::vector<const IndexInfo*>& fill = planned.back().second;
    for (const IndexInfo& index : planned.back().first.indexes) {
      const IndexInfo* old = existing ? existing->FindIndex(index.name) : nullptr;
      if (existing != nullptr && (old == nullptr || old->id != index.id)) fill.push_back(&index);
    }
  }

  // Existing documents must fit the new schema; new indexes get their entries.
  // Only tables whose fields changed are validated, and only tables that get
  // an index are backfilled: a deploy that changes neither reads no document
  // (a code-only deploy costs the same at 1M documents as at 10). A table
  // that is read is read whole (one read range, so a concurrent write to it
  // aborts the deploy), in pages, so memory holds a page of documents and the
  // new index entries, never the table. These reads are the deploy's own work,
  // not a function's: they do not count against the read limits.
  for (auto& [info, fill] : planned) {
    const TableInfo* existing = current.FindTable(info.name);
    if (existing == nullptr) continue;  // a new table is empty
    const TableSpec* old_spec = current.schema().FindTable(info.name);
    const TableSpec* new_spec = schema.FindTable(info.name);
    const bool validate = old_spec == nullptr || old_spec->fields != new_spec->fields;
    if (!validate && fill.empty()) continue;
    TXFN_RETURN_IF_ERROR(RecordRead(info.by_id, KeyRange::All(), /*counted=*/false));
    size_t backfill_bytes = 0;
    size_t documents = 0;
    KeyRange rest = KeyRange::All();
    for (;;) {
      TXFN_ASSIGN_OR_RETURN(MergedScan page,
                            ScanMerged(info.by_id, rest, ScanOrder::kAscending, kDeployPageSize));
      for (const IndexEntry& entry : page.entries) {
        TXFN_ASSIGN_OR_RETURN(Value doc, DecodeBinary(entry.value));
        if (validate) {
          absl::Status fits = schema.ValidateDocument(info.name, doc, options_.limits.document);
          if (!fits.ok()) {
            return absl::InvalidArgumentError(internal::StrCat(
                "existing document ", entry.key, " does not fit the new schema: ", fits.message()));
          }
        }
        ++documents;
        for (const IndexInfo* index : fill) {
          std::string key = SecondaryIndexKey(index->fields, doc, entry.key);
          backfill_bytes += key.size() + entry.key.size();
          if (backfill_bytes > kMaxDeployBackfillBytes) {
            return absl::ResourceExhaustedError(internal::StrCat(
                "the new indexes of table '", info.name, "' would take over ",
                kMaxDeployBackfillBytes >> 20, " MiB of entries (at document ", documents,
                "): index smaller fields, or add the indexes in several deploys"));
          }
          overlay_[index->id][std::move(key)] = entry.key;
        }
      }
      if (page.exhausted || page.last_key.empty()) break;
      rest = KeyRange::After(page.last_key);
    }
  }
  // Dropped tables must be empty.
  for (const auto& [name, table] : current.tables()) {
    if (schema.FindTable(name) != nullptr) continue;
    MergedScan any;
    for (KeyRange rest = KeyRange::All();; rest = KeyRange::After(any.last_key)) {
      TXFN_ASSIGN_OR_RETURN(any, ScanMerged(table.by_id, rest, ScanOrder::kAscending, 1));
      if (!any.entries.empty() || any.exhausted || any.last_key.empty()) break;
    }
    TXFN_RETURN_IF_ERROR(RecordRead(table.by_id, KeyRange::All()));
    if (!any.entries.empty()) {
      return absl::FailedPreconditionError(internal::StrCat(
          "cannot drop table '", name, "': it still has documents; delete them first"));
    }
    TXFN_RETURN_IF_ERROR(
        WriteMetadata(internal::StrCat(metadata_keys::kTablePrefix, name), std::nullopt));
  }
  for (const auto& [info, fill] : planned) {
    TXFN_RETURN_IF_ERROR(WriteMetadata(internal::StrCat(metadata_keys::kTablePrefix, info.name),
                                       EncodeBinary(info.ToValue())));
  }
  TXFN_RETURN_IF_ERROR(WriteMetadata(metadata_keys::kSchema, EncodeBinary(schema.ToValue())));
  TXFN_RETURN_IF_ERROR(WriteMetadata(metadata_keys::kNextId, internal::StrCat(next_id)));
  return ReloadMetadata();
}

// ---- Results ---------------------------------------------------------------------------

PreparedCommit Transaction::Prepare() const {
  PreparedCommit commit{.tenant = tenant(), .begin_ts = begin_ts(), .reads = reads_};
  if (!has_writes()) return commit;
  // What a transaction writes depends on the schema and index ids it saw.
  commit.reads.push_back({.index = kMetadataIndex, .range = KeyRange::All()});
  std::vector<IndexId> indexes;
  for (const auto& [index, entries] : overlay_) indexes.push_back(index);
  std::sort(indexes.begin(), indexes.end());
  for (IndexId index : indexes) {
    for (const auto& [key, value] : overlay_.at(index)) {
      commit.writes.push_back({.index = index, .key = key, .value = value});
    }
  }
  return commit;
}

}  // namespace txfn
