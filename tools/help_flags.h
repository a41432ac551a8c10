// Makes --help list a tool's own flags. Abseil's --help lists only the flags
// defined in a file named like the program (txfn-sim's are in sim_main.cc, so
// it listed none and said "No flags matched"); this counts every file under
// tools/ instead, and still leaves out Abseil's own (--flagfile, ...).
#ifndef TXFN_TOOLS_HELP_FLAGS_H_
#define TXFN_TOOLS_HELP_FLAGS_H_

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace txfn::tools {

inline void ListOwnFlagsInHelp() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tools/");
  };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_HELP_FLAGS_H_
