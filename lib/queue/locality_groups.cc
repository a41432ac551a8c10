// Locality groups; see txfn/locality_groups.h.
#include "txfn/locality_groups.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "txfn/internal/strings.h"
#include "txfn/rendezvous_router.h"

namespace txfn {
namespace {

using internal::StrCat;

// Groups ranked for `function`, best first (ties by index, so the order is total).
std::vector<int> Rank(std::string_view function, const std::vector<uint64_t>& group_hashes) {
  const uint64_t key = RendezvousHash::Of(function);
  std::vector<int> order(group_hashes.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    const uint64_t sa = RendezvousHash::Score(key, group_hashes[a]);
    const uint64_t sb = RendezvousHash::Score(key, group_hashes[b]);
    return sa != sb ? sa > sb : a < b;
  });
  return order;
}

}  // namespace

int RendezvousGroup(std::string_view function, absl::Span<const std::string> groups) {
  if (groups.empty()) return -1;
  const uint64_t key = RendezvousHash::Of(function);
  int best = 0;
  uint64_t best_score = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const uint64_t s = RendezvousHash::Score(key, RendezvousHash::Of(groups[i]));
    if (i == 0 || s > best_score) {
      best = static_cast<int>(i);
      best_score = s;
    }
  }
  return best;
}

int LocalityPlan::GroupOf(std::string_view function) const {
  auto it = function_group.find(internal::ToAbsl(function));
  if (it != function_group.end()) return it->second;
  return RendezvousGroup(function, groups);
}

absl::StatusOr<LocalityPlan> PlanLocalityGroups(absl::Span<const FunctionFootprint> functions,
                                                std::vector<std::string> groups, double slack) {
  if (groups.empty()) return absl::InvalidArgumentError("locality groups: no groups");
  if (!(slack >= 0) || !std::isfinite(slack)) {
    return absl::InvalidArgumentError(StrCat("locality groups: slack must be >= 0, not ", slack));
  }
  absl::flat_hash_set<std::string> names;
  for (const std::string& g : groups) {
    if (g.empty()) return absl::InvalidArgumentError("locality groups: a group name is empty");
    if (!names.insert(g).second) {
      return absl::InvalidArgumentError(StrCat("locality groups: group '", g, "' appears twice"));
    }
  }
  double total = 0;
  absl::flat_hash_set<std::string> seen;
  for (const FunctionFootprint& f : functions) {
    if (!std::isfinite(f.memory) || f.memory < 0) {
      return absl::InvalidArgumentError(StrCat("locality groups: function '", f.function,
                                               "' has memory ", f.memory, " (must be >= 0)"));
    }
    if (!seen.insert(f.function).second) {
      return absl::InvalidArgumentError(
          StrCat("locality groups: function '", f.function, "' appears twice"));
    }
    total += f.memory;
  }
  if (!std::isfinite(total)) {
    return absl::InvalidArgumentError(
        StrCat("locality groups: the functions' memory adds up past the largest double (",
               functions.size(), " functions)"));
  }
  LocalityPlan plan;
  plan.groups = std::move(groups);
  plan.group_memory.assign(plan.groups.size(), 0);
  std::vector<uint64_t> hashes;
  for (const std::string& g : plan.groups) hashes.push_back(RendezvousHash::Of(g));

  // Hungriest first (ties by name), so the big ones are spread before the
  // small ones fill the gaps.
  std::vector<const FunctionFootprint*> order;
  for (const FunctionFootprint& f : functions) order.push_back(&f);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->memory != b->memory ? a->memory > b->memory : a->function < b->function;
  });
  const double bound = (1 + slack) * total / static_cast<double>(plan.groups.size());
  for (const FunctionFootprint* f : order) {
    const std::vector<int> ranked = Rank(f->function, hashes);
    int chosen = -1;
    for (int g : ranked) {
      if (plan.group_memory[g] + f->memory <= bound) {
        chosen = g;
        break;
      }
    }
    if (chosen < 0) {
      // Nothing fits under the bound (a function bigger than the slack):
      // the least loaded group.
      chosen =
          static_cast<int>(std::min_element(plan.group_memory.begin(), plan.group_memory.end()) -
                           plan.group_memory.begin());
    }
    plan.group_memory[chosen] += f->memory;
    plan.function_group[f->function] = chosen;
  }
  return plan;
}

}  // namespace txfn
