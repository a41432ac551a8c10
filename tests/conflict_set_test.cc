#include "lib/conflict_set.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "txfn/storage.h"

namespace txfn {
namespace {

using std::string_literals::operator""s;

constexpr IndexId kMaxIndex = UINT32_MAX;

TEST(ConflictSetTest, EmptySetHasNoWrites) {
  ConflictSet set;
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.horizon(), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::All()), 0u);
  std::vector<ReadRange> reads = {{.index = 0, .range = KeyRange::All()}};
  EXPECT_FALSE(set.Conflicts(reads, 0));
  EXPECT_FALSE(set.Conflicts({}, 0));
}

TEST(ConflictSetTest, PointRangeSeesOnlyItsKey) {
  ConflictSet set;
  set.Add(1, "k", 5);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("k")), 5u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("k\0"s)), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("j")), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("")), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(2, KeyRange::Point("k")), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::Point("k")), 0u);
}

TEST(ConflictSetTest, RangeReturnsNewestInside) {
  ConflictSet set;
  set.Add(1, "a", 1);
  set.Add(1, "c", 2);
  set.Add(1, "b", 3);
  set.Add(1, "d", 4);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("a", "c")), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("a", "b")), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Closed("b", "c")), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("c", "d")), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::After("c")), 4u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::All()), 4u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("a\0"s, "b")), 0u);
}

TEST(ConflictSetTest, EmptyAndInvertedRangesSeeNothing) {
  ConflictSet set;
  set.Add(1, "b", 7);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("b", "b")), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::HalfOpen("c", "a")), 0u);
  std::vector<ReadRange> reads = {{.index = 1, .range = KeyRange::HalfOpen("c", "a")}};
  EXPECT_FALSE(set.Conflicts(reads, 0));
}

TEST(ConflictSetTest, PrefixRangeHandlesFfBytes) {
  ConflictSet set;
  set.Add(3, "\xff", 1);
  set.Add(3, "\xff\xff\x01", 2);
  set.Add(3, "\xfe\xff", 3);
  EXPECT_EQ(set.MaxWriteTimestamp(3, KeyRange::Prefix("\xff")), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(3, KeyRange::Prefix("\xff\xff")), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(3, KeyRange::Prefix("\xfe")), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(4, KeyRange::Prefix("")), 0u);
}

TEST(ConflictSetTest, UnboundedEndStopsAtItsIndex) {
  ConflictSet set;
  set.Add(1, "m", 1);
  set.Add(2, "", 2);  // the first key of the next index
  set.Add(0, "\xff\xff\xff\xff\xff", 3);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::All()), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange{"a", std::nullopt}), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange{"n", std::nullopt}), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(2, KeyRange::All()), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::All()), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::Prefix("\xff")), 3u);
}

TEST(ConflictSetTest, LargestIndexIdIsUnboundedAbove) {
  ConflictSet set;
  set.Add(kMaxIndex - 1, "z", 1);
  set.Add(kMaxIndex, "", 2);
  set.Add(kMaxIndex, "\xff\xff\xff\xff\xff\xff", 3);
  EXPECT_EQ(set.MaxWriteTimestamp(kMaxIndex, KeyRange::All()), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(kMaxIndex, KeyRange::Point("")), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(kMaxIndex, KeyRange::After("")), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(kMaxIndex - 1, KeyRange::All()), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(kMaxIndex - 1, KeyRange::After("z")), 0u);
}

TEST(ConflictSetTest, EmptyKeyAndNulBytesAreDistinctKeys) {
  ConflictSet set;
  set.Add(0, "", 1);
  set.Add(0, "\0"s, 2);
  set.Add(0, "\0\0\0\0"s, 3);
  set.Add(0, "\0\0\0\0\0"s, 4);
  EXPECT_EQ(set.size(), 4u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::Point("")), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::Point("\0"s)), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::Point("\0\0\0\0"s)), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::HalfOpen("", "\0\0\0\0"s)), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::After("\0\0\0\0"s)), 4u);
}

TEST(ConflictSetTest, ReAddMovesTimestampUp) {
  ConflictSet set;
  set.Add(1, "k", 1);
  set.Add(1, "other", 2);
  set.Add(1, "k", 3);
  set.Add(1, "k", 3);  // the same commit again: no change
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("k")), 3u);
  set.PruneThrough(2);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("k")), 3u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point("other")), 0u);
  set.PruneThrough(3);
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::All()), 0u);
}

TEST(ConflictSetTest, ConflictsComparesAgainstAfter) {
  ConflictSet set;
  set.Add(1, "alice", 10);
  set.Add(2, "bob", 11);
  std::vector<ReadRange> reads = {{.index = 1, .range = KeyRange::Prefix("a")},
                                  {.index = 2, .range = KeyRange::Point("carol")}};
  EXPECT_TRUE(set.Conflicts(reads, 9));
  EXPECT_FALSE(set.Conflicts(reads, 10));
  reads.push_back({.index = 2, .range = KeyRange::Closed("b", "bob")});
  EXPECT_TRUE(set.Conflicts(reads, 10));
  EXPECT_FALSE(set.Conflicts(reads, 11));
}

TEST(ConflictSetTest, PruneThroughAdvancesHorizonMonotonically) {
  ConflictSet set;
  set.Add(1, "a", 5);
  set.Add(1, "b", 6);
  set.PruneThrough(4);
  EXPECT_EQ(set.horizon(), 4u);
  EXPECT_EQ(set.size(), 2u);
  set.PruneThrough(5);
  EXPECT_EQ(set.horizon(), 5u);
  EXPECT_EQ(set.size(), 1u);
  set.PruneThrough(3);  // never moves back
  EXPECT_EQ(set.horizon(), 5u);
  EXPECT_EQ(set.size(), 1u);
  set.PruneThrough(100);  // past every write
  EXPECT_EQ(set.horizon(), 100u);
  EXPECT_EQ(set.size(), 0u);
  set.Add(1, "a", 101);  // usable after emptying
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::All()), 101u);
  EXPECT_EQ(set.size(), 1u);
}

TEST(ConflictSetTest, MoveTransfersContentsAndEmptiesSource) {
  ConflictSet a;
  a.Add(1, "k", 3);
  a.PruneThrough(1);
  ConflictSet b(std::move(a));
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(b.horizon(), 1u);
  EXPECT_EQ(b.MaxWriteTimestamp(1, KeyRange::Point("k")), 3u);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.horizon(), 0u);
  a.Add(1, "x", 1);
  EXPECT_EQ(a.MaxWriteTimestamp(1, KeyRange::All()), 1u);

  ConflictSet c;
  c.Add(9, "z", 1);
  c = std::move(b);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.MaxWriteTimestamp(9, KeyRange::All()), 0u);
  EXPECT_EQ(c.MaxWriteTimestamp(1, KeyRange::Point("k")), 3u);
}

TEST(ConflictSetDeathTest, AddOutOfOrderAsserts) {
  ConflictSet set;
  set.Add(1, "k", 5);
  EXPECT_DEBUG_DEATH(set.Add(1, "j", 4), "nondecreasing");
}

TEST(ConflictSetTest, LargeHistoryPrunesBackToZero) {
  ConflictSet set;
  std::mt19937_64 rng(42);
  constexpr int kAdds = 200000;
  std::vector<std::string> keys;
  keys.reserve(kAdds);
  for (int i = 0; i < kAdds; ++i) {
    std::string key(16, '\0');
    for (char& c : key) c = static_cast<char>(rng());
    keys.push_back(key);
    set.Add(static_cast<IndexId>(i % 3), key, static_cast<Timestamp>(i + 1));
  }
  EXPECT_EQ(set.size(), static_cast<size_t>(kAdds));
  // The last add to index 0 is i = kAdds - 2 (kAdds - 2 is a multiple of 3).
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::All()), static_cast<Timestamp>(kAdds - 1));
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point(keys[1000])), 1001u);
  set.PruneThrough(kAdds / 2);
  EXPECT_EQ(set.size(), static_cast<size_t>(kAdds / 2));
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point(keys[1000])), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(1, KeyRange::Point(keys[kAdds - 1])),
            static_cast<Timestamp>(kAdds));
  set.PruneThrough(kAdds);
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.MaxWriteTimestamp(0, KeyRange::All()), 0u);
}

// ---- Randomized differential test against a linear-scan model ----

struct Write {
  IndexId index;
  std::string key;
  Timestamp ts;
};

class NaiveModel {
 public:
  void Add(IndexId index, const std::string& key, Timestamp ts) {
    writes_.push_back({index, key, ts});
  }
  void PruneThrough(Timestamp ts) {
    horizon_ = std::max(horizon_, ts);
    std::erase_if(writes_, [&](const Write& w) { return w.ts <= horizon_; });
  }
  Timestamp MaxWriteTimestamp(IndexId index, const KeyRange& range) const {
    Timestamp max = 0;
    for (const Write& w : writes_) {
      if (w.index == index && range.Contains(w.key)) max = std::max(max, w.ts);
    }
    return max;
  }
  bool Conflicts(const std::vector<ReadRange>& reads, Timestamp after) const {
    for (const ReadRange& r : reads) {
      if (MaxWriteTimestamp(r.index, r.range) > after) return true;
    }
    return false;
  }
  size_t size() const {
    std::set<std::pair<IndexId, std::string>> distinct;
    for (const Write& w : writes_) distinct.emplace(w.index, w.key);
    return distinct.size();
  }

 private:
  std::vector<Write> writes_;
  Timestamp horizon_ = 0;
};

class Randomizer {
 public:
  explicit Randomizer(uint64_t seed) : rng_(seed) {}
  uint64_t Uniform(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  IndexId Index() {
    static constexpr IndexId kIndexes[] = {0, 1, 2, kMaxIndex - 1, kMaxIndex};
    return kIndexes[Uniform(std::size(kIndexes))];
  }
  // Short keys over a tiny alphabet, so keys collide, share prefixes, and tie
  // on the 4-byte prefix the implementation compares first.
  std::string Key() {
    static constexpr char kAlphabet[] = {'\0', '\x01', 'a', 'b', '\xfe', '\xff'};
    std::string key(Uniform(7), '\0');
    for (char& c : key) c = kAlphabet[Uniform(std::size(kAlphabet))];
    return key;
  }
  KeyRange Range() {
    switch (Uniform(9)) {
      case 0:
        return KeyRange::Point(Key());
      case 1:
        return KeyRange::Prefix(Key());
      case 2:
        return KeyRange::Closed(Key(), Key());
      case 3:
        return KeyRange::HalfOpen(Key(), Key());  // often empty or inverted
      case 4:
        return KeyRange::After(Key());
      case 5:
        return KeyRange{Key(), std::nullopt};
      case 6:
        return KeyRange::All();
      case 7: {
        std::string k = Key();
        return KeyRange::HalfOpen(k, k);  // empty
      }
      default: {
        std::string a = Key(), b = Key();
        if (b < a) std::swap(a, b);
        return KeyRange::HalfOpen(a, b);
      }
    }
  }

 private:
  std::mt19937_64 rng_;
};

class ConflictSetDifferentialTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ConflictSetDifferentialTest, MatchesNaiveModel) {
  Randomizer r(GetParam());
  ConflictSet set;
  NaiveModel model;
  Timestamp ts = 1;
  size_t max_size = 0;
  for (int step = 0; step < 20000; ++step) {
    const uint64_t op = r.Uniform(100);
    if (op < 45) {
      // A commit writes 1-3 keys at one ts (sometimes the same key twice).
      const int writes = 1 + static_cast<int>(r.Uniform(3));
      for (int i = 0; i < writes; ++i) {
        const IndexId index = r.Index();
        const std::string key = r.Key();
        set.Add(index, key, ts);
        model.Add(index, key, ts);
      }
      ts += 1 + r.Uniform(2);
    } else if (op < 75) {
      const IndexId index = r.Index();
      const KeyRange range = r.Range();
      ASSERT_EQ(set.MaxWriteTimestamp(index, range), model.MaxWriteTimestamp(index, range))
          << "step " << step << " index " << index << " start '" << range.start << "'";
    } else if (op < 95) {
      std::vector<ReadRange> reads(r.Uniform(4));
      for (ReadRange& read : reads) read = {.index = r.Index(), .range = r.Range()};
      const Timestamp after = set.horizon() + r.Uniform(ts - set.horizon() + 1);
      ASSERT_EQ(set.Conflicts(reads, after), model.Conflicts(reads, after)) << "step " << step;
    } else if (op < 98) {
      // Slide the window: usually a little, sometimes most of the way.
      const Timestamp before = set.horizon();
      const Timestamp span = r.Uniform(8) == 0 ? ts - before : 30;
      const Timestamp bound = std::min(ts - 1, before + r.Uniform(span));
      set.PruneThrough(bound);
      model.PruneThrough(bound);
      ASSERT_EQ(set.horizon(), std::max(before, bound));
    } else {
      // A prune below the horizon changes nothing.
      const Timestamp bound = r.Uniform(set.horizon() + 1);
      set.PruneThrough(bound);
      model.PruneThrough(bound);
    }
    if (step % 64 == 0 || op >= 95) {
      ASSERT_EQ(set.size(), model.size()) << "step " << step;
    }
    max_size = std::max(max_size, set.size());
  }
  EXPECT_GT(max_size, 200u);  // the window really held a history
  set.PruneThrough(ts);
  EXPECT_EQ(set.size(), 0u);
}

// A bigger window (thousands of keys, so the tree is several levels deep and
// nodes split and empty out), with keys longer than the 16-byte inline prefix
// that share long common prefixes, so comparisons fall back to the full key.
class ConflictSetDeepDifferentialTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(ConflictSetDeepDifferentialTest, LongCommonPrefixesMatchNaiveModel) {
  Randomizer r(GetParam());
  ConflictSet set;
  NaiveModel model;
  static const std::string kPrefixes[] = {"", "common-prefix-", "common-prefix-x",
                                          std::string(13, '\xff'), std::string(12, '\0')};
  // Each draw in its own statement: the order of the draws must not depend on
  // the compiler's evaluation order.
  auto key = [&] {
    std::string k = kPrefixes[r.Uniform(std::size(kPrefixes))];
    k += r.Key();
    return k;
  };
  auto range = [&] {
    KeyRange range = r.Range();
    const std::string& prefix = kPrefixes[r.Uniform(std::size(kPrefixes))];
    range.start = prefix + range.start;
    if (range.end.has_value()) *range.end = prefix + *range.end;
    return range;
  };
  Timestamp ts = 1;
  size_t max_size = 0;
  for (int step = 0; step < 12000; ++step) {
    const uint64_t op = r.Uniform(100);
    if (op < 70) {
      const int writes = 1 + static_cast<int>(r.Uniform(3));
      for (int i = 0; i < writes; ++i) {
        const IndexId index = r.Uniform(4) == 0 ? r.Index() : 1;
        const std::string k = key();
        set.Add(index, k, ts);
        model.Add(index, k, ts);
      }
      ts += 1 + r.Uniform(2);
    } else if (op < 82) {
      const IndexId index = r.Uniform(4) == 0 ? r.Index() : 1;
      const KeyRange kr = range();
      ASSERT_EQ(set.MaxWriteTimestamp(index, kr), model.MaxWriteTimestamp(index, kr))
          << "step " << step;
    } else if (op < 99 || r.Uniform(2) == 0) {
      std::vector<ReadRange> reads(1 + r.Uniform(3));
      for (ReadRange& read : reads) {
        const IndexId index = r.Uniform(4) == 0 ? r.Index() : 1;
        read = {.index = index, .range = range()};
      }
      const Timestamp after = set.horizon() + r.Uniform(ts - set.horizon() + 1);
      ASSERT_EQ(set.Conflicts(reads, after), model.Conflicts(reads, after)) << "step " << step;
    } else {
      // Slide the window by a random amount, sometimes almost all the way.
      const Timestamp span = r.Uniform(16) == 0 ? ts - set.horizon() : 200;
      const Timestamp bound = std::min(ts - 1, set.horizon() + r.Uniform(span));
      set.PruneThrough(bound);
      model.PruneThrough(bound);
    }
    if (step % 512 == 0 || op >= 99) {
      ASSERT_EQ(set.size(), model.size()) << "step " << step;
    }
    max_size = std::max(max_size, set.size());
  }
  EXPECT_GT(max_size, 1200u);  // > 32 leaves: inner nodes split too
  set.PruneThrough(ts);
  EXPECT_EQ(set.size(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Seeds, ConflictSetDifferentialTest,
                         ::testing::Values(1, 2, 3, 4, 5, 6, 7, 8, 0xdeadbeef, 20261123));

// Fewer seeds: the naive model is slow on a window this size (under ASan).
INSTANTIATE_TEST_SUITE_P(Seeds, ConflictSetDeepDifferentialTest,
                         ::testing::Values(1, 2, 3, 20261123));

}  // namespace
}  // namespace txfn
