// tests/resident_memory.h — this process's resident memory, for tests and benchmarks that
// bound what a workload leaves behind or holds at its peak.
//
//   const size_t before = txfn::testing::ResidentBytes();
//   ... the workload ...
//   EXPECT_LT(txfn::testing::ResidentBytes() - before, size_t{64} << 20);
//
// Thread-safe (reads /proc/self/statm).
#ifndef TXFN_TESTS_RESIDENT_MEMORY_H_
#define TXFN_TESTS_RESIDENT_MEMORY_H_

#include <unistd.h>

#include <cstddef>
#include <cstdio>

namespace txfn::testing {

// Resident set size of this process in bytes; 0 if /proc cannot tell.
inline size_t ResidentBytes() {
  FILE* statm = std::fopen("/proc/self/statm", "r");
  if (statm == nullptr) return 0;
  unsigned long pages = 0, resident = 0;
  const int read = std::fscanf(statm, "%lu %lu", &pages, &resident);
  std::fclose(statm);
  return read == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace txfn::testing

#endif  // TXFN_TESTS_RESIDENT_MEMORY_H_
