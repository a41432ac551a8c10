// The consumer projects' program: uses txfn::core's public headers and
// exits non-zero if what it sees is wrong.
#include <cstdio>

#include "txfn/storage.h"

int main() {
  txfn::KeyRange range = txfn::KeyRange::Prefix("user/");
  if (!range.Contains("user/42") || range.Contains("users")) {
    std::fprintf(stderr, "KeyRange::Prefix misbehaves\n");
    return 1;
  }
  std::printf("txfn consumer ok\n");
  return 0;
}
