#include "tools/app_dir.h"

#include <fstream>
#include <sstream>
#include <system_error>

#include "fmt/format.h"

namespace txfn::tools {
namespace {

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(fmt::format("cannot read {}", path.string()));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(fmt::format("error reading {}", path.string()));
  return std::move(out).str();
}

bool Skipped(const std::filesystem::path& name) {
  const std::string s = name.filename().string();
  return (!s.empty() && s[0] == '.') || s == "node_modules";
}

}  // namespace

absl::StatusOr<AppDir> LoadAppDir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(fmt::format("{} is not a directory", dir.string()));
  }
  const std::filesystem::path schema_path = dir / "schema.json";
  if (!std::filesystem::is_regular_file(schema_path, ec)) {
    return absl::NotFoundError(fmt::format("no schema.json in {}", dir.string()));
  }
  AppDir app;
  absl::StatusOr<std::string> schema_json = ReadFile(schema_path);
  if (!schema_json.ok()) return schema_json.status();
  absl::StatusOr<Schema> schema = Schema::FromJson(*schema_json);
  if (!schema.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {}", schema_path.string(), std::string(schema.status().message())));
  }
  app.schema = *std::move(schema);
  app.schema_json = *std::move(schema_json);

  std::filesystem::recursive_directory_iterator it(dir, ec), end;
  if (ec)
    return absl::InvalidArgumentError(
        fmt::format("cannot list {}: {}", dir.string(), ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec)
      return absl::InvalidArgumentError(
          fmt::format("cannot list {}: {}", dir.string(), ec.message()));
    if (Skipped(it->path())) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const std::string ext = it->path().extension().string();
    if (ext != ".js" && ext != ".mjs") continue;
    absl::StatusOr<std::string> source = ReadFile(it->path());
    if (!source.ok()) return source.status();
    app.modules[std::filesystem::relative(it->path(), dir).generic_string()] = *std::move(source);
  }
  if (app.modules.empty()) {
    return absl::InvalidArgumentError(fmt::format("no .js module in {}", dir.string()));
  }
  return app;
}

}  // namespace txfn::tools
