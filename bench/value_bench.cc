// Benchmarks of txfn/value.h on the index-maintenance hot path.
//
// The workload is index keys of a typical secondary index, ("by_channel":
// channel, _creationTime, _id) tuples, drawn so that pairs often share a
// prefix (same channel, close times), as neighbouring index entries do.
//
//   BM_ValueKeyEncode          AppendKey of one tuple into a reused buffer
//   BM_ValueKeyCompareEncoded  memcmp order of two pre-encoded keys   (baseline)
//   BM_ValueCompare            Compare of the same pairs, element by element
//   BM_ValueKeyDecode          DecodeKeyPrefix of a whole tuple key
//   BM_ValueBinaryEncode/Decode, BM_ValueByteSize, BM_ValueToJson on a small document
//
// Compare the items_per_second of BM_ValueCompare with BM_ValueKeyCompareEncoded:
// their ratio is what comparing Values directly costs against comparing keys
// already encoded (the committer compares encoded keys; in-memory index code
// may compare Values).
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "txfn/value.h"

namespace txfn {
namespace {

using Tuple = std::vector<Value>;

constexpr size_t kPairs = 4096;

std::string RandomId(std::mt19937_64& rng) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  std::string id(32, '0');
  for (char& c : id) c = kAlphabet[rng() % 32];
  return id;
}

Tuple RandomTuple(std::mt19937_64& rng) {
  static const char* const kChannels[] = {"general", "random", "engineering",   "design",
                                          "support", "sales",  "announcements", "ops"};
  return {Value::String(kChannels[rng() % 8]),
          Value::Float64(1.7e12 + static_cast<double>(rng() % 100000)),
          Value::String(RandomId(rng))};
}

// A tuple near `t`: same channel, and sometimes the same time.
Tuple Neighbour(const Tuple& t, std::mt19937_64& rng) {
  Tuple n = t;
  if (rng() % 2) n[1] = Value::Float64(t[1].float64() + static_cast<double>(rng() % 10));
  n[2] = Value::String(RandomId(rng));
  return n;
}

std::string EncodeTuple(const Tuple& t) {
  std::string key;
  for (const Value& v : t) AppendKey(v, &key);
  return key;
}

int CompareTuples(const Tuple& a, const Tuple& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (int c = Compare(a[i], b[i]); c != 0) return c;
  }
  return (a.size() > b.size()) - (a.size() < b.size());
}

struct Pairs {
  std::vector<Tuple> a, b;
  std::vector<std::string> key_a, key_b;
};

// The same pairs on every call (fixed seed), so every benchmark sees them.
Pairs MakePairs() {
  Pairs p;
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < kPairs; ++i) {
    Tuple a = RandomTuple(rng);
    Tuple b = (i % 4 == 0) ? RandomTuple(rng) : Neighbour(a, rng);
    p.key_a.push_back(EncodeTuple(a));
    p.key_b.push_back(EncodeTuple(b));
    p.a.push_back(std::move(a));
    p.b.push_back(std::move(b));
  }
  return p;
}

Value SmallDocument() {
  return Value::FromObject({
      {"_id", Value::String("k57a9c2xw3h8f1m0d7s6q4r5t2y9u8p")},
      {"_creationTime", Value::Float64(1.7e12 + 123.5)},
      {"channel", Value::String("general")},
      {"author", Value::FromObject({{"name", Value::String("ada")}, {"id", Value::Int64(7)}})},
      {"body", Value::String("hello, world: a message of ordinary length for a chat app")},
      {"likes", Value::Int64(3)},
      {"tags", Value::FromArray({Value::String("greeting"), Value::String("test")})},
  });
}

void BM_ValueKeyEncode(benchmark::State& state) {
  const Pairs pairs = MakePairs();
  std::string key;
  size_t i = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    key.clear();
    for (const Value& v : pairs.a[i]) AppendKey(v, &key);
    bytes += key.size();
    benchmark::DoNotOptimize(key.data());
    i = (i + 1) % kPairs;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["key_bytes"] = static_cast<double>(pairs.key_a[0].size());
}
BENCHMARK(BM_ValueKeyEncode);

void BM_ValueKeyCompareEncoded(benchmark::State& state) {
  const Pairs pairs = MakePairs();
  size_t i = 0;
  int sum = 0;
  for (auto _ : state) {
    const std::string& a = pairs.key_a[i];
    const std::string& b = pairs.key_b[i];
    int c = std::memcmp(a.data(), b.data(), std::min(a.size(), b.size()));
    if (c == 0) c = (a.size() > b.size()) - (a.size() < b.size());
    sum += c;
    i = (i + 1) % kPairs;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueKeyCompareEncoded);

void BM_ValueCompare(benchmark::State& state) {
  const Pairs pairs = MakePairs();
  size_t i = 0;
  int sum = 0;
  for (auto _ : state) {
    sum += CompareTuples(pairs.a[i], pairs.b[i]);
    i = (i + 1) % kPairs;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueCompare);

void BM_ValueKeyDecode(benchmark::State& state) {
  const Pairs pairs = MakePairs();
  size_t i = 0;
  for (auto _ : state) {
    std::string_view rest = pairs.key_a[i];
    while (!rest.empty()) {
      absl::StatusOr<Value> v = DecodeKeyPrefix(&rest);
      if (!v.ok()) state.SkipWithError("decode failed");
      benchmark::DoNotOptimize(v);
    }
    i = (i + 1) % kPairs;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueKeyDecode);

void BM_ValueBinaryEncode(benchmark::State& state) {
  Value doc = SmallDocument();
  for (auto _ : state) {
    std::string wire = EncodeBinary(doc);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["doc_bytes"] = static_cast<double>(doc.ByteSize());
}
BENCHMARK(BM_ValueBinaryEncode);

void BM_ValueBinaryDecode(benchmark::State& state) {
  std::string wire = EncodeBinary(SmallDocument());
  for (auto _ : state) {
    absl::StatusOr<Value> v = DecodeBinary(wire);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueBinaryDecode);

void BM_ValueByteSize(benchmark::State& state) {
  Value doc = SmallDocument();
  for (auto _ : state) benchmark::DoNotOptimize(doc.ByteSize());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueByteSize);

void BM_ValueToJson(benchmark::State& state) {
  Value doc = SmallDocument();
  for (auto _ : state) {
    std::string json = ToJson(doc);
    benchmark::DoNotOptimize(json.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ValueToJson);

}  // namespace
}  // namespace txfn
