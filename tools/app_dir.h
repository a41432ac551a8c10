// tools/app_dir.h — loads an application directory for txfn's tools.
//
// An application directory holds ES modules (*.js, *.mjs, in any
// subdirectory; each module's path is its path relative to the directory,
// with '/' separators, e.g. "lib/util.js") and a schema.json in the format of
// txfn::Schema::FromJson. Hidden entries (".x") and node_modules are skipped.
//
//   absl::StatusOr<txfn::tools::AppDir> app = txfn::tools::LoadAppDir("examples/apps/bank");
//   engine->Deploy("bank", app->modules, app->schema);
//
// Thread safety: a free function with no shared state.
#ifndef TXFN_TOOLS_APP_DIR_H_
#define TXFN_TOOLS_APP_DIR_H_

#include <filesystem>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "txfn/schema.h"

namespace txfn::tools {

struct AppDir {
  std::map<std::string, std::string> modules;  // relative path -> source
  Schema schema;
  std::string schema_json;  // schema.json as read: what `schema` was parsed from
};

// NotFound if `dir` is not a directory or has no schema.json; InvalidArgument
// (naming the file) for an unreadable module or a bad schema, or when the
// directory holds no module.
[[nodiscard]] absl::StatusOr<AppDir> LoadAppDir(const std::filesystem::path& dir);

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_APP_DIR_H_
