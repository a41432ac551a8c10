#include "txfn/rendezvous_router.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace txfn {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using Router = RendezvousRouter<int>;

// The hash is a cross-process contract: it must be usable at compile time too.
static_assert(RendezvousHash::Fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
static_assert(RendezvousHash::Of("tenant-1") == 0x82b94b9e8abe94cdULL);

std::vector<std::string> Keys(int n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (int i = 0; i < n; ++i) keys.push_back(absl::StrCat("tenant-", i));
  return keys;
}

std::string NodeId(int i) { return absl::StrCat("runner-", i); }

void AddNodes(Router& router, int n, int first = 0) {
  for (int i = first; i < first + n; ++i) ASSERT_TRUE(router.AddNode(NodeId(i), i).ok());
}

// ---------------------------------------------------------------- hash

TEST(RendezvousHashTest, Fnv1a64StandardVectors) {
  // From the FNV reference test suite (isthe.com/chongo/tech/comp/fnv).
  EXPECT_EQ(RendezvousHash::Fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(RendezvousHash::Fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(RendezvousHash::Fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

TEST(RendezvousHashTest, Mix64IsTheSplitmix64Finalizer) {
  // splitmix64 seeded with 0 outputs Mix64(k * golden gamma) for k = 1, 2, ...
  // Reference outputs from Vigna's splitmix64.c.
  constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;
  EXPECT_EQ(RendezvousHash::Mix64(kGamma * 1), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(RendezvousHash::Mix64(kGamma * 2), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(RendezvousHash::Mix64(kGamma * 3), 0x06c45d188009454fULL);
  EXPECT_EQ(RendezvousHash::Mix64(kGamma * 4), 0xf88bb8a8724c81ecULL);
}

TEST(RendezvousHashTest, GoldenValues) {
  // Computed independently (Python) from the formulas in the header. If these
  // change, routers of different versions disagree: never change them.
  EXPECT_EQ(RendezvousHash::Of(""), 0xf52a15e9a9b5e89bULL);
  EXPECT_EQ(RendezvousHash::Of("tenant-1"), 0x82b94b9e8abe94cdULL);
  EXPECT_EQ(RendezvousHash::Of("runner-a"), 0x6c311652000a9b86ULL);
  EXPECT_EQ(RendezvousHash::Of("runner-b"), 0xe620a7c8361b96e7ULL);
  const uint64_t key = RendezvousHash::Of("tenant-1");
  EXPECT_EQ(RendezvousHash::Score(key, RendezvousHash::Of("runner-a")), 0x9468c4dacffdd929ULL);
  EXPECT_EQ(RendezvousHash::Score(key, RendezvousHash::Of("runner-b")), 0xcc5d6084708de67bULL);
}

TEST(RendezvousHashTest, HashesEveryByteIncludingNul) {
  using std::string_literals::operator""s;
  EXPECT_NE(RendezvousHash::Of("a\0b"s), RendezvousHash::Of("a\0c"s));
  EXPECT_NE(RendezvousHash::Of("a\0"s), RendezvousHash::Of("a"));
  EXPECT_NE(RendezvousHash::Of("\xff"), RendezvousHash::Of("\x7f"));
}

TEST(RendezvousHashTest, WeightedScoreIsFinitePositiveAndMonotone) {
  const uint64_t samples[] = {0,
                              1,
                              (uint64_t{1} << 11) - 1,
                              uint64_t{1} << 11,
                              (uint64_t{1} << 63) - 1,
                              uint64_t{1} << 63,
                              std::numeric_limits<uint64_t>::max() - (uint64_t{1} << 11),
                              std::numeric_limits<uint64_t>::max()};
  double prev = 0;
  for (uint64_t s : samples) {
    const double w = RendezvousHash::WeightedScore(s, 1.0);
    EXPECT_TRUE(std::isfinite(w)) << s;
    EXPECT_GT(w, 0) << s;
    EXPECT_GE(w, prev) << s;
    prev = w;
  }
  // Distinct top-53-bit values near 1 stay distinct (h is exact, log1p used).
  const uint64_t top = std::numeric_limits<uint64_t>::max();
  EXPECT_GT(RendezvousHash::WeightedScore(top, 1.0),
            RendezvousHash::WeightedScore(top - (uint64_t{1} << 11), 1.0));
  // h = 1/2 - 2^-54 and h = 1/2 + 2^-54 straddle the log/log1p switch.
  const uint64_t half = uint64_t{1} << 63;
  EXPECT_GT(RendezvousHash::WeightedScore(half, 1.0),
            RendezvousHash::WeightedScore(half - (uint64_t{1} << 11), 1.0));
  EXPECT_NEAR(RendezvousHash::WeightedScore(half, 1.0), 1 / std::log(2.0), 1e-12);
  // Linear in the weight.
  EXPECT_DOUBLE_EQ(RendezvousHash::WeightedScore(12345, 3.0),
                   3 * RendezvousHash::WeightedScore(12345, 1.0));
}

// ---------------------------------------------------------------- ranking

TEST(RendezvousRouterTest, GoldenRankings) {
  Router router;
  AddNodes(router, 10);
  EXPECT_THAT(router.RankIds("tenant-1", 3), ElementsAre("runner-8", "runner-2", "runner-3"));
  EXPECT_THAT(router.RankIds("tenant-42", 3), ElementsAre("runner-9", "runner-1", "runner-7"));
  EXPECT_THAT(router.Rank("tenant-1", 3), ElementsAre(8, 2, 3));
  EXPECT_EQ(router.Pick("tenant-1"), 8);

  Router weighted;  // runner-i has weight i + 1
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(weighted.AddNode(NodeId(i), i, i + 1.0).ok());
  EXPECT_THAT(weighted.RankIds("tenant-1", 3), ElementsAre("runner-8", "runner-2", "runner-9"));
  EXPECT_THAT(weighted.RankIds("tenant-42", 3), ElementsAre("runner-9", "runner-7", "runner-4"));
}

TEST(RendezvousRouterTest, RankIsIndependentOfInsertionOrder) {
  Router forward;
  Router backward;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(forward.AddNode(NodeId(i), i, 1.0 + i % 3).ok());
    ASSERT_TRUE(backward.AddNode(NodeId(19 - i), 19 - i, 1.0 + (19 - i) % 3).ok());
  }
  for (const std::string& key : Keys(2000)) {
    ASSERT_EQ(forward.RankIds(key, 20), backward.RankIds(key, 20)) << key;
  }
}

TEST(RendezvousRouterTest, EqualWeightFastPathAgreesWithWeightedFormula) {
  for (double weight : {1.0, 2.5}) {
    Router router;
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(router.AddNode(NodeId(i), i, weight).ok());
    for (const std::string& key : Keys(5000)) {
      std::vector<std::pair<double, int>> expected;
      const uint64_t kh = RendezvousHash::Of(key);
      for (int i = 0; i < 30; ++i) {
        const uint64_t raw = RendezvousHash::Score(kh, RendezvousHash::Of(NodeId(i)));
        expected.emplace_back(RendezvousHash::WeightedScore(raw, weight), i);
      }
      std::sort(expected.begin(), expected.end(), [&](const auto& a, const auto& b) {
        if (a.first != b.first) return a.first > b.first;
        return RendezvousHash::Score(kh, RendezvousHash::Of(NodeId(a.second))) >
               RendezvousHash::Score(kh, RendezvousHash::Of(NodeId(b.second)));
      });
      std::vector<int> want;
      want.reserve(30);
      for (int j = 0; j < 30; ++j) want.push_back(expected[j].second);
      ASSERT_EQ(router.Rank(key, 30), want) << key << " weight " << weight;
    }
  }
}

TEST(RendezvousRouterTest, PickAndAcquireAgreeWithRank) {
  // Pick and Acquire find the first choice with a pruned scan; Rank sorts
  // every node. They must agree, including for extreme weight ratios.
  const std::vector<std::vector<double>> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 3, 4, 5, 6, 7, 8}, {1e-3, 1, 1e3, 1, 5, 0.5, 1e-6, 2}};
  for (const auto& weights : cases) {
    Router router;
    for (size_t i = 0; i < weights.size(); ++i) {
      ASSERT_TRUE(router.AddNode(NodeId(i), static_cast<int>(i), weights[i]).ok());
    }
    for (const std::string& key : Keys(20000)) {
      const int first = router.Rank(key, 1).front();
      ASSERT_EQ(router.Pick(key), first) << key;
      ASSERT_EQ(router.Acquire(key)->node(), first) << key;
    }
  }
}

TEST(RendezvousRouterTest, RankClampsK) {
  Router router;
  EXPECT_THAT(router.Rank("t", 3), IsEmpty());
  EXPECT_EQ(router.Pick("t"), std::nullopt);
  AddNodes(router, 4);
  EXPECT_EQ(router.Rank("t", 10).size(), 4u);
  EXPECT_THAT(router.Rank("t", 0), IsEmpty());
  EXPECT_EQ(router.Rank("t", 1).front(), router.Pick("t"));
}

TEST(RendezvousRouterTest, RemovalKeepsTheRelativeOrderOfTheRest) {
  Router router;
  AddNodes(router, 12);
  const std::vector<std::string> keys = Keys(3000);
  std::vector<std::vector<std::string>> before;
  before.reserve(keys.size());
  for (const auto& k : keys) before.push_back(router.RankIds(k, 12));

  ASSERT_TRUE(router.RemoveNode("runner-5").ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<std::string> want = before[i];
    want.erase(std::find(want.begin(), want.end(), "runner-5"));
    ASSERT_EQ(router.RankIds(keys[i], 12), want) << keys[i];
  }
  // Adding it back restores every ranking exactly.
  ASSERT_TRUE(router.AddNode("runner-5", 5).ok());
  for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(router.RankIds(keys[i], 12), before[i]);
}

class KeyMovementTest : public ::testing::TestWithParam<int> {};

TEST_P(KeyMovementTest, AddingOrRemovingOneOfNMovesAboutOneNth) {
  const int n = GetParam();
  const std::vector<std::string> keys = Keys(100000);
  const double expected = 1.0 / n;
  Router router;
  AddNodes(router, n);
  std::vector<int> first;
  first.reserve(keys.size());
  for (const auto& k : keys) first.push_back(*router.Pick(k));

  // Remove each of a few nodes in turn (n -> n - 1).
  for (int victim : {0, n / 2, n - 1}) {
    ASSERT_TRUE(router.RemoveNode(NodeId(victim)).ok());
    int moved = 0;
    for (size_t i = 0; i < keys.size(); ++i) {
      const int now = *router.Pick(keys[i]);
      if (now != first[i]) {
        ++moved;
        ASSERT_EQ(first[i], victim) << "a key not on the removed node moved: " << keys[i];
      }
    }
    const double fraction = static_cast<double>(moved) / keys.size();
    EXPECT_NEAR(fraction, expected, 0.1 * expected) << "removing " << victim << " of " << n;
    RecordProperty(absl::StrCat("removed_", victim, "_moved_fraction"), absl::StrCat(fraction));
    ASSERT_TRUE(router.AddNode(NodeId(victim), victim).ok());
  }

  // Add a new node to n - 1 others (n - 1 -> n).
  Router smaller;
  AddNodes(smaller, n - 1);
  std::vector<int> before;
  before.reserve(keys.size());
  for (const auto& k : keys) before.push_back(*smaller.Pick(k));
  ASSERT_TRUE(smaller.AddNode(NodeId(1000), 1000).ok());
  int moved = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    const int now = *smaller.Pick(keys[i]);
    if (now != before[i]) {
      ++moved;
      ASSERT_EQ(now, 1000) << "a key moved between old nodes: " << keys[i];
    }
  }
  const double fraction = static_cast<double>(moved) / keys.size();
  EXPECT_NEAR(fraction, expected, 0.1 * expected) << "adding one to " << n - 1;
  RecordProperty("added_moved_fraction", absl::StrCat(fraction));
}

INSTANTIATE_TEST_SUITE_P(Nodes, KeyMovementTest, ::testing::Values(10, 100));

TEST(RendezvousRouterTest, EqualNodesShareKeysUniformly) {
  constexpr int kNodes = 100;
  constexpr int kKeys = 1000000;
  Router router;
  AddNodes(router, kNodes);
  std::vector<int> counts(kNodes);
  for (int i = 0; i < kKeys; ++i) ++counts[*router.Pick(absl::StrCat("tenant-", i))];
  const double mean = static_cast<double>(kKeys) / kNodes;
  const int max = *std::max_element(counts.begin(), counts.end());
  const int min = *std::min_element(counts.begin(), counts.end());
  EXPECT_LE(max / mean, 1.10);
  EXPECT_GE(min / mean, 0.90);
  RecordProperty("max_over_mean", absl::StrCat(max / mean));
  RecordProperty("min_over_mean", absl::StrCat(min / mean));
}

TEST(RendezvousRouterTest, WeightsAreHonoured) {
  // Ten nodes of weights 1..10, and a skewed trio.
  const std::vector<std::vector<double>> cases = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 1, 8}};
  constexpr int kKeys = 1000000;
  double worst = 0;  // largest relative deviation from the weighted share
  for (const auto& weights : cases) {
    Router router;
    double total = 0;
    for (size_t i = 0; i < weights.size(); ++i) {
      ASSERT_TRUE(router.AddNode(NodeId(i), static_cast<int>(i), weights[i]).ok());
      total += weights[i];
    }
    std::vector<int> counts(weights.size());
    for (int i = 0; i < kKeys; ++i) ++counts[*router.Pick(absl::StrCat("tenant-", i))];
    for (size_t i = 0; i < weights.size(); ++i) {
      const double want = kKeys * weights[i] / total;
      EXPECT_NEAR(counts[i], want, 0.05 * want) << "node " << i << " weight " << weights[i];
      worst = std::max(worst, std::abs(counts[i] - want) / want);
    }
  }
  RecordProperty("worst_weight_deviation", absl::StrCat(worst));
}

// ---------------------------------------------------------------- leases

TEST(RendezvousRouterTest, LeaseHoldsAndReleasesASlot) {
  Router router;
  AddNodes(router, 5);
  const std::string top = router.RankIds("tenant-1", 1).front();
  {
    absl::StatusOr<Router::Lease> lease = router.Acquire("tenant-1");
    ASSERT_TRUE(lease.ok()) << lease.status();
    EXPECT_TRUE(lease->valid());
    EXPECT_EQ(lease->node_id(), top);
    EXPECT_EQ(lease->node(), *router.Pick("tenant-1"));
    EXPECT_EQ(*router.InFlight(top), 1);

    Router::Lease moved = *std::move(lease);
    EXPECT_FALSE(lease->valid());  // NOLINT(bugprone-use-after-move): checks moved-from
    EXPECT_EQ(*router.InFlight(top), 1);

    Router::Lease other = *router.Acquire("tenant-1");
    EXPECT_EQ(*router.InFlight(top), 2);
    other = std::move(moved);  // releases other's slot, takes moved's
    EXPECT_EQ(*router.InFlight(top), 1);
    EXPECT_TRUE(other);
    other.Release();
    EXPECT_FALSE(other);
    EXPECT_EQ(*router.InFlight(top), 0);
    other.Release();  // idempotent
    EXPECT_EQ(*router.InFlight(top), 0);
  }
  EXPECT_EQ(*router.InFlight(top), 0);
  Router::Lease empty;
  EXPECT_FALSE(empty.valid());
}

TEST(RendezvousRouterTest, FullNodesOverflowInRankOrderThenExhaust) {
  Router router;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(router.AddNode(NodeId(i), i, 1.0, 2).ok());
  const std::vector<std::string> rank = router.RankIds("tenant-9", 3);
  std::vector<Router::Lease> leases;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<Router::Lease> lease = router.Acquire("tenant-9");
    ASSERT_TRUE(lease.ok()) << i << ": " << lease.status();
    EXPECT_EQ(lease->node_id(), rank[i / 2]) << i;
    leases.push_back(*std::move(lease));
  }
  for (const auto& id : rank) EXPECT_EQ(*router.InFlight(id), 2);
  absl::StatusOr<Router::Lease> none = router.Acquire("tenant-9");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);

  // Freeing a slot on the second choice sends the next request there.
  leases[2].Release();
  EXPECT_EQ(router.Acquire("tenant-9")->node_id(), rank[1]);
  // Freeing the first choice brings requests back to it.
  leases[0].Release();
  absl::StatusOr<Router::Lease> back = router.Acquire("tenant-9");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->node_id(), rank[0]);
}

TEST(RendezvousRouterTest, AcquireExceptTakesTheBestNodeNotSkippedInRankOrder) {
  Router router;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(router.AddNode(NodeId(i), i, 1.0, 1).ok());
  const std::vector<std::string> rank = router.RankIds("tenant-3", 4);
  // Nothing skipped: Acquire's choice.
  absl::StatusOr<Router::Lease> first = router.AcquireExcept("tenant-3", {});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->node_id(), rank[0]);
  first->Release();
  // Skipping the first and third choices: the second, then (it is full) the fourth.
  const std::vector<std::string> skip = {rank[0], rank[2]};
  absl::StatusOr<Router::Lease> second = router.AcquireExcept("tenant-3", skip);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->node_id(), rank[1]);
  absl::StatusOr<Router::Lease> fourth = router.AcquireExcept("tenant-3", skip);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ(fourth->node_id(), rank[3]);
  // Every node left is full, though the skipped ones have room.
  absl::StatusOr<Router::Lease> full = router.AcquireExcept("tenant-3", skip);
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), ::testing::HasSubstr("in-flight limit"));
  // Every node skipped: none left, whatever their room.
  absl::StatusOr<Router::Lease> none = router.AcquireExcept("tenant-3", rank);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(none.status().message(), ::testing::HasSubstr("no node left"));
  EXPECT_EQ(router.AcquireExcept("tenant-3", {"no-such-node"})->node_id(), rank[0]);
  EXPECT_EQ(Router().AcquireExcept("t", {}).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(RendezvousRouterTest, DefaultAndPerNodeLimits) {
  Router router;
  ASSERT_TRUE(router.AddNode("big", 0).ok());
  std::vector<Router::Lease> leases;
  for (int i = 0; i < Router::kDefaultMaxInFlight; ++i) {
    absl::StatusOr<Router::Lease> lease = router.Acquire(absl::StrCat("k", i));
    ASSERT_TRUE(lease.ok()) << i;
    leases.push_back(*std::move(lease));
  }
  EXPECT_EQ(router.Acquire("k").status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(router.AddNode("small", 1, 1.0, 1).ok());
  absl::StatusOr<Router::Lease> on_small = router.Acquire("k");
  ASSERT_TRUE(on_small.ok());
  EXPECT_EQ(on_small->node_id(), "small");
  EXPECT_EQ(router.Acquire("k").status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(RendezvousRouterTest, NoNodesIsResourceExhausted) {
  Router router;
  EXPECT_EQ(router.Acquire("t").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(router.size(), 0u);
}

TEST(RendezvousRouterTest, RemovalWithOutstandingLeases) {
  auto router = std::make_unique<RendezvousRouter<std::string>>();
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(router->AddNode(NodeId(i), absl::StrCat("payload-", i), 1.0, 3).ok());
  }
  const std::vector<std::string> rank = router->RankIds("tenant-3", 2);
  std::vector<RendezvousRouter<std::string>::Lease> held;
  held.reserve(3);
  for (int i = 0; i < 3; ++i) held.push_back(*router->Acquire("tenant-3"));
  for (const auto& l : held) EXPECT_EQ(l.node_id(), rank[0]);

  ASSERT_TRUE(router->RemoveNode(rank[0]).ok());
  EXPECT_EQ(router->InFlight(rank[0]).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(router->RemoveNode(rank[0]).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(held[0].node(), absl::StrCat("payload-", rank[0].substr(7)));  // still readable
  EXPECT_EQ(router->Acquire("tenant-3")->node_id(), rank[1]);

  // Re-adding the id starts a fresh counter; old leases never touch it.
  ASSERT_TRUE(router->AddNode(rank[0], "again", 1.0, 3).ok());
  EXPECT_EQ(*router->InFlight(rank[0]), 0);
  auto fresh = router->Acquire("tenant-3");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->node(), "again");
  held[0].Release();
  EXPECT_EQ(*router->InFlight(rank[0]), 1);

  // Leases may outlive the router itself.
  router.reset();
  EXPECT_FALSE(held[1].node().empty());
  held.clear();
  fresh->Release();
}

TEST(RendezvousRouterTest, AddNodeValidates) {
  Router router;
  ASSERT_TRUE(router.AddNode("a", 0).ok());
  EXPECT_EQ(router.AddNode("a", 1).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(router.AddNode("", 1).code(), absl::StatusCode::kInvalidArgument);
  for (double bad : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
    EXPECT_EQ(router.AddNode("b", 1, bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(router.AddNode("b", 1, 1.0, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(router.RemoveNode("zzz").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(router.size(), 1u);
}

TEST(RendezvousRouterTest, WeightsBecomeEqualAgainAfterRemoval) {
  // Equal-weight fast path is re-enabled after removing the odd node; the
  // ranking must not change for the nodes that remain either way.
  Router mixed;
  Router equal;
  AddNodes(mixed, 8);
  AddNodes(equal, 8);
  ASSERT_TRUE(mixed.AddNode("heavy", 99, 5.0).ok());
  ASSERT_TRUE(mixed.RemoveNode("heavy").ok());
  for (const auto& k : Keys(2000)) ASSERT_EQ(mixed.RankIds(k, 8), equal.RankIds(k, 8));
}

}  // namespace
}  // namespace txfn
