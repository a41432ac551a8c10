// txfn/locality_groups.h — partitioning functions over worker groups
// (XFaaS's Locality Optimizer).
//
// Every worker keeps the JIT code of the functions it runs; if every worker
// ran every function, each would hold all of them. Locality groups split the
// functions over groups of workers so that each worker sees fewer distinct
// functions, and spread the memory-hungry functions so no group holds more
// than its share.
//
// PlanLocalityGroups places functions, hungriest first, each on the
// highest-ranked group (rendezvous hashing of the function's name against
// the group's name, RendezvousHash) whose memory would stay within
// (1 + slack) times the average per group. Because ranks do not depend on the
// other groups, adding or removing one group of n moves only about 1/n of the
// functions (plus the few the load bound displaces).
//
//   std::vector<txfn::FunctionFootprint> fns = {{"mail:send", 120}, {"img:resize", 900}};
//   absl::StatusOr<txfn::LocalityPlan> plan =
//       txfn::PlanLocalityGroups(fns, {"g0", "g1", "g2"});
//   int group = plan->GroupOf("img:resize");   // index into plan->groups
//
// Thread safety: pure functions; a LocalityPlan is a value.
#ifndef TXFN_LOCALITY_GROUPS_H_
#define TXFN_LOCALITY_GROUPS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace txfn {

struct FunctionFootprint {
  std::string function;
  double memory = 0;  // any unit (MiB of JIT code, say); >= 0
};

struct LocalityPlan {
  std::vector<std::string> groups;
  absl::flat_hash_map<std::string, int> function_group;  // function -> index into groups
  std::vector<double> group_memory;                      // of the placed functions

  // The function's group: its planned one, or (not planned) its
  // highest-ranked group. Requires at least one group.
  [[nodiscard]] int GroupOf(std::string_view function) const;
};

// The highest-ranked group of `function` among `groups` by rendezvous hashing
// (what GroupOf uses for functions not in a plan). -1 if `groups` is empty.
[[nodiscard]] int RendezvousGroup(std::string_view function, absl::Span<const std::string> groups);

// Plans the groups. InvalidArgument: no groups, an empty or duplicate group
// name, a duplicate function, a negative or non-finite memory (or memories
// whose sum is not finite), slack < 0.
[[nodiscard]] absl::StatusOr<LocalityPlan> PlanLocalityGroups(
    absl::Span<const FunctionFootprint> functions, std::vector<std::string> groups,
    double slack = 0.1);

}  // namespace txfn

#endif  // TXFN_LOCALITY_GROUPS_H_
