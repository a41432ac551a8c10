#include "lib/v8/module_loader.h"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "lib/v8/js_errors.h"
#include "lib/v8/js_strings.h"
#include "lib/v8/regexp_literals.h"
#include "lib/v8/termination_deferral.h"
#include "txfn/internal/status_macros.h"
#include "txfn/internal/strings.h"

namespace txfn::internal {
namespace {

constexpr std::string_view kServerModuleName = "txfn/server";
constexpr const char* kServerExports[] = {"query", "mutation", "action"};

// The longest import specifier the loader considers (module paths are short).
constexpr size_t kMaxSpecifierBytes = 1024;

std::string Specifier(v8::Isolate* isolate, v8::Local<v8::String> s) {
  return Utf8Prefix(isolate, s, kMaxSpecifierBytes);
}

}  // namespace

// "a/./b/../c" -> "a/c"; nullopt if ".." leaves the root or a segment is empty.
std::optional<std::string> NormalizePath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  if (parts.empty()) return std::nullopt;
  std::string out;
  for (std::string_view p : parts) {
    if (!out.empty()) out += '/';
    out.append(p);
  }
  return out;
}

// The stored module path `spec` (imported from `referrer`, or "" for the
// function name) names, trying "<path>", then "<path>.js", then "<path>.mjs".
std::optional<std::string> ResolveModule(const TenantMetadata& metadata, std::string_view referrer,
                                         std::string_view spec) {
  std::string joined;
  if (spec.starts_with("./") || spec.starts_with("../")) {
    size_t slash = referrer.rfind('/');
    joined = StrCat(slash == std::string_view::npos ? "" : referrer.substr(0, slash + 1), spec);
  } else {
    joined = std::string(spec);
  }
  std::optional<std::string> path = NormalizePath(joined);
  if (!path.has_value()) return std::nullopt;
  const auto& modules = metadata.modules();
  if (modules.contains(*path)) return path;
  for (std::string_view extension : {".js", ".mjs"}) {
    std::string with_extension = StrCat(*path, extension);
    if (modules.contains(with_extension)) return with_extension;
  }
  return std::nullopt;
}

size_t ModulesFingerprint(const TenantMetadata& metadata) {
  size_t h = 0;
  for (const auto& [path, source] : metadata.modules()) {
    h = absl::HashOf(h, std::string_view(path), std::string_view(source));
  }
  return h;
}

absl::StatusOr<v8::Local<v8::Module>> ModuleLoader::Load(ContextState& cs,
                                                         const std::string& path) {
  if (auto it = cs.by_path.find(path); it != cs.by_path.end()) {
    return cs.modules[it->second].module.Get(isolate_);
  }
  v8::Local<v8::Context> context = isolate_->GetCurrentContext();
  const std::string& source = txn_.metadata().modules().find(path)->second;
  TXFN_ASSIGN_OR_RETURN(v8::Local<v8::Module> module, Compile(path, source));
  cs.by_path.emplace(path, cs.modules.size());
  cs.modules.push_back(ModuleEntry{path, v8::Global<v8::Module>(isolate_, module)});
  v8::Local<v8::FixedArray> requests = module->GetModuleRequests();
  for (int i = 0; i < requests->Length(); ++i) {
    v8::Local<v8::ModuleRequest> request = requests->Get(context, i).As<v8::ModuleRequest>();
    std::string spec = Specifier(isolate_, request->GetSpecifier());
    if (spec == kServerModuleName) {
      ServerModule(cs);
      continue;
    }
    std::optional<std::string> dep = ResolveModule(txn_.metadata(), path, spec);
    if (!dep.has_value()) {
      return absl::NotFoundError(
          StrCat("module ", Quote(spec), " imported by '", path, "' not found"));
    }
    TXFN_RETURN_IF_ERROR(Load(cs, *dep).status());
  }
  return module;
}

absl::Status ModuleLoader::Evaluate(ContextState& cs, v8::Local<v8::Module> module,
                                    std::string_view path,
                                    const std::function<absl::Status()>& js_error) {
  v8::Local<v8::Context> context = isolate_->GetCurrentContext();
  if (module->GetStatus() == v8::Module::kUninstantiated &&
      module->InstantiateModule(context, &ResolveCallback).IsNothing()) {
    return js_error();
  }
  if (module->GetStatus() == v8::Module::kInstantiated && module->IsGraphAsync()) {
    return absl::InvalidArgumentError(
        StrCat("module '", path, "' cannot run: top-level await is not supported (",
               AwaitingModules(cs, path), "); await inside the functions instead"));
  }
  if (module->GetStatus() == v8::Module::kInstantiated) {
    v8::Local<v8::Value> evaluated;
    // No termination until V8 has marked the module evaluating (termination_deferral.h):
    // EvaluateServer, or the end of Evaluate, allows it again. A termination sent before
    // may still be pending: then nothing is evaluated.
    TerminationDeferral* deferral = DeferralOf(isolate_);
    if (deferral != nullptr && !deferral->Defer()) {
      deferral->Allow();
      return absl::CancelledError(StrCat("module '", path, "' was stopped before it evaluated"));
    }
    const bool ok = module->Evaluate(context).ToLocal(&evaluated);
    if (deferral != nullptr) deferral->Allow();
    if (!ok) return js_error();
    cs.microtasks->PerformCheckpoint(isolate_);
    if (isolate_->IsExecutionTerminating()) return js_error();
    if (evaluated->IsPromise()) {
      v8::Local<v8::Promise> p = evaluated.As<v8::Promise>();
      if (p->State() == v8::Promise::kRejected) {
        return RejectionStatus(isolate_, rt_.code_key(), p->Result());
      }
      if (p->State() == v8::Promise::kPending) {
        return absl::UnknownError(
            StrCat("module '", path, "' did not finish evaluating (top-level await)"));
      }
    }
  }
  if (module->GetStatus() == v8::Module::kErrored) {
    return RejectionStatus(isolate_, rt_.code_key(), module->GetException());
  }
  return absl::OkStatus();
}

std::string ModuleLoader::AwaitingModules(ContextState& cs, std::string_view root) {
  v8::Local<v8::Context> context = isolate_->GetCurrentContext();
  // The modules `entry` imports (loaded into `cs`: all of them, once `root` is instantiated).
  auto imports = [&](const ModuleEntry& entry) {
    std::vector<size_t> out;
    v8::Local<v8::FixedArray> requests = entry.module.Get(isolate_)->GetModuleRequests();
    for (int i = 0; i < requests->Length(); ++i) {
      v8::Local<v8::ModuleRequest> request = requests->Get(context, i).As<v8::ModuleRequest>();
      std::optional<std::string> dep =
          ResolveModule(txn_.metadata(), entry.path, Specifier(isolate_, request->GetSpecifier()));
      auto it = dep.has_value() ? cs.by_path.find(*dep) : cs.by_path.end();
      if (it != cs.by_path.end()) out.push_back(it->second);
    }
    return out;
  };
  auto graph_awaits = [&](size_t i) {
    v8::Local<v8::Module> m = cs.modules[i].module.Get(isolate_);
    return m->GetStatus() >= v8::Module::kInstantiated && m->IsGraphAsync();  // V8 checks it
  };
  // `root`'s graph (a reused context holds other graphs too), each module with its imports.
  std::vector<std::pair<size_t, std::vector<size_t>>> graph;
  absl::flat_hash_set<size_t> seen;
  if (auto it = cs.by_path.find(std::string(root)); it != cs.by_path.end()) {
    graph.emplace_back(it->second, imports(cs.modules[it->second]));
    seen.insert(it->second);
  }
  for (size_t next = 0; next < graph.size(); ++next) {
    const std::vector<size_t> deps = graph[next].second;  // a copy: emplace_back may move it
    for (size_t dep : deps) {
      if (seen.insert(dep).second) graph.emplace_back(dep, imports(cs.modules[dep]));
    }
  }
  std::vector<std::string> awaiting, in_cycles;
  for (const auto& [i, deps] : graph) {
    if (!graph_awaits(i)) continue;
    const bool an_import_awaits = std::any_of(deps.begin(), deps.end(), graph_awaits);
    (an_import_awaits ? in_cycles : awaiting).push_back(StrCat("'", cs.modules[i].path, "'"));
  }
  // Modules that import each other all have graphs that await: which one does is not told.
  return awaiting.empty() ? StrCat("in one of ", FirstNames(in_cycles))
                          : StrCat("in ", FirstNames(awaiting));
}

v8::Local<v8::Module> ModuleLoader::ServerModule(ContextState& cs) {
  if (cs.server_module.IsEmpty()) {
    std::vector<v8::Local<v8::String>> names;
    for (const char* name : kServerExports) names.push_back(MessageString(isolate_, name));
    cs.server_module.Reset(isolate_, v8::Module::CreateSyntheticModule(
                                         isolate_, MessageString(isolate_, kServerModuleName),
                                         names, &EvaluateServer));
  }
  return cs.server_module.Get(isolate_);
}

v8::MaybeLocal<v8::Value> ModuleLoader::EvaluateServer(v8::Local<v8::Context> context,
                                                       v8::Local<v8::Module> module) {
  v8::Isolate* isolate = context->GetIsolate();
  // The module evaluating this one is marked evaluating by now: a termination is safe.
  if (TerminationDeferral* deferral = DeferralOf(isolate)) deferral->Allow();
  ContextState* cs = StateOf(context);
  if (cs == nullptr) return {};
  v8::Local<v8::Object> server = cs->server.Get(isolate);
  for (const char* name : kServerExports) {
    v8::Local<v8::String> key = MessageString(isolate, name);
    v8::Local<v8::Value> fn;
    if (!server->Get(context, key).ToLocal(&fn) ||
        module->SetSyntheticModuleExport(isolate, key, fn).IsNothing()) {
      return {};
    }
  }
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(context).ToLocal(&resolver) ||
      resolver->Resolve(context, v8::Undefined(isolate)).IsNothing()) {
    return {};
  }
  return resolver->GetPromise();
}

v8::MaybeLocal<v8::Module> ModuleLoader::ResolveCallback(v8::Local<v8::Context> context,
                                                         v8::Local<v8::String> specifier,
                                                         v8::Local<v8::FixedArray> /*assertions*/,
                                                         v8::Local<v8::Module> referrer) {
  v8::Isolate* isolate = context->GetIsolate();
  ContextState* cs = StateOf(context);
  std::string spec = Specifier(isolate, specifier);
  if (cs == nullptr) {
    isolate->ThrowException(
        v8::Exception::Error(MessageString(isolate, "txfn: this context is closed")));
    return {};
  }
  if (spec == kServerModuleName && !cs->server_module.IsEmpty()) {
    return cs->server_module.Get(isolate);
  }
  for (const ModuleEntry& m : cs->modules) {
    if (m.module.Get(isolate) != referrer) continue;
    // Load() resolved every import already; find it by the same rule.
    std::string joined = spec;
    if (spec.starts_with("./") || spec.starts_with("../")) {
      size_t slash = m.path.rfind('/');
      joined = StrCat(slash == std::string::npos ? "" : m.path.substr(0, slash + 1), spec);
    }
    std::optional<std::string> path = NormalizePath(joined);
    if (path.has_value()) {
      for (const std::string& p : {*path, StrCat(*path, ".js"), StrCat(*path, ".mjs")}) {
        if (auto it = cs->by_path.find(p); it != cs->by_path.end()) {
          return cs->modules[it->second].module.Get(isolate);
        }
      }
    }
  }
  isolate->ThrowException(
      v8::Exception::Error(MessageString(isolate, StrCat("cannot resolve module ", Quote(spec)))));
  return {};
}

namespace {

size_t CountOf(std::string_view text, std::string_view needle) {
  size_t count = 0;
  for (size_t i = text.find(needle); i != std::string_view::npos;
       i = text.find(needle, i + needle.size())) {
    ++count;
  }
  return count;
}

size_t EscapesIn(std::string_view text) { return CountOf(text, "\\p{") + CountOf(text, "\\P{"); }
size_t NamedGroupsIn(std::string_view text) {
  return CountOf(text, "(?<") - CountOf(text, "(?<=") - CountOf(text, "(?<!");
}

}  // namespace

absl::Status CheckRegExpCost(std::string_view source, JsGoal goal) {
  const size_t escapes = EscapesIn(source);
  const size_t groups = NamedGroupsIn(source);
  if (std::max(escapes, groups) > kMaxRegExpEscapes) {
    return SandboxLimitError(
        StrCat(std::max(escapes, groups),
               " Unicode property escapes (\\p{...}) or named groups ((?<name>...)) in regular "
               "expressions exceed the sandbox limit of ",
               kMaxRegExpEscapes, " (V8 cannot interrupt their compilation)"));
  }
  // A literal with `i`: its classes are folded (as the bootstrap's checkedPattern counts).
  absl::Status status;
  const std::optional<AmbiguousSlash> ambiguous =
      ForEachRegExpLiteral(source, goal, [&](const RegExpLiteral& literal) {
        const std::string_view pattern = literal.pattern;
        const std::string_view flags = literal.flags;
        if (!status.ok()) return;
        if (literal.in_function_parameters && RegExpNeedsGuard(pattern, flags)) {
          status = absl::InvalidArgumentError(StrCat(
              "a regular expression literal of ", pattern.size(),
              " characters in a Function's parameters: the sandbox cannot guard it there (over ",
              kMaxUnguardedRegExp, " characters, V8 cannot interrupt it); move it to the body"));
          return;
        }
        if (const size_t depth = RegExpNestingDepth(pattern); depth > kMaxRegExpNesting) {
          status = SandboxLimitError(
              StrCat("a regular expression literal nests groups ", depth,
                     " deep, over the sandbox limit of ", kMaxRegExpNesting,
                     " (V8 compiles it uninterrupted, and deep nesting exhausts the process)"));
          return;
        }
        if (flags.find('i') == std::string_view::npos) return;
        const size_t folded = EscapesIn(pattern) + CountOf(pattern, "[");
        const bool unicode = flags.find('u') != std::string_view::npos;
        const size_t limit = unicode ? kMaxRegExpFolded : kMaxRegExpEscapes;
        if (folded <= limit) return;
        status = SandboxLimitError(StrCat(
            "a regular expression literal with the ", unicode ? "i and u flags" : "i flag", " has ",
            folded, " character classes or Unicode property escapes, over the sandbox limit of ",
            limit, " (V8 case-folds each when it compiles the literal, uninterrupted)"));
      });
  if (!status.ok() || !ambiguous.has_value()) return status;
  const size_t line = 1 + std::count(source.begin(), source.begin() + ambiguous->offset, '\n');
  return absl::InvalidArgumentError(StrCat(
      "line ", line, ": the '/' after '", ambiguous->after,
      "' may start a regular expression or divide, and the sandbox must know which (it rewrites "
      "long regular expressions so the CPU limit can stop them): put a ';' before a regular "
      "expression, or parentheses around what is divided"));
}

absl::StatusOr<v8::Local<v8::Module>> ModuleLoader::CompileSource(const std::string& path,
                                                                  const std::string& source,
                                                                  const CompiledModule* cached) {
  v8::Local<v8::String> text;
  if (!v8::String::NewFromUtf8(isolate_, source.data(), v8::NewStringType::kNormal,
                               static_cast<int>(source.size()))
           .ToLocal(&text)) {
    return absl::InvalidArgumentError(StrCat("module '", path, "' is too large"));
  }
  v8::ScriptOrigin origin(isolate_, MessageString(isolate_, path), 0, 0, false, -1,
                          v8::Local<v8::Value>(), false, false, /*is_module=*/true);
  v8::ScriptCompiler::CachedData* data = nullptr;
  if (cached != nullptr) {
    data = new v8::ScriptCompiler::CachedData(
        reinterpret_cast<const uint8_t*>(cached->code_cache.data()),
        static_cast<int>(cached->code_cache.size()),
        v8::ScriptCompiler::CachedData::BufferNotOwned);
  }
  v8::ScriptCompiler::Source src(text, origin, data);  // owns `data`
  v8::TryCatch tc(isolate_);
  v8::Local<v8::Module> module;
  if (!v8::ScriptCompiler::CompileModule(isolate_, &src,
                                         cached != nullptr ? v8::ScriptCompiler::kConsumeCodeCache
                                                           : v8::ScriptCompiler::kNoCompileOptions)
           .ToLocal(&module)) {
    return CaughtStatus(isolate_, rt_.code_key(), tc, "");
  }
  if (cached != nullptr && !src.GetCachedData()->rejected) {
    ++stats_.modules_from_cache;
  } else {
    ++stats_.modules_compiled;
  }
  return module;
}

absl::StatusOr<v8::Local<v8::Module>> ModuleLoader::Compile(const std::string& path,
                                                            const std::string& source) {
  std::string key =
      StrCat(txn_.tenant(), std::string_view("\0", 1), path, std::string_view("\0", 1),
             absl::HashOf(std::string_view(source)), ":", source.size());
  v8::Local<v8::Module> fresh;
  absl::StatusOr<std::shared_ptr<const CompiledModule>> cached =
      cache_.Get(key, [&]() -> absl::StatusOr<std::shared_ptr<const CompiledModule>> {
        TXFN_RETURN_IF_ERROR(
            Prefixed(CheckRegExpCost(source, JsGoal::kModule), StrCat("module '", path, "'")));
        auto compiled = std::make_shared<CompiledModule>();
        compiled->source = source;
        compiled->guarded_source = GuardLongRegExpLiterals(source, JsGoal::kModule).value_or("");
        TXFN_ASSIGN_OR_RETURN(fresh, CompileSource(path, compiled->text(), nullptr));
        std::unique_ptr<v8::ScriptCompiler::CachedData> data(
            v8::ScriptCompiler::CreateCodeCache(fresh->GetUnboundModuleScript()));
        if (data != nullptr) {
          compiled->code_cache.assign(reinterpret_cast<const char*>(data->data),
                                      static_cast<size_t>(data->length));
        }
        return compiled;
      });
  if (!cached.ok()) return cached.status();
  v8::Local<v8::Module> module = fresh;
  const CompiledModule& c = **cached;
  if (module.IsEmpty()) {
    if (c.source == source) {
      TXFN_ASSIGN_OR_RETURN(module,
                            CompileSource(path, c.text(), c.code_cache.empty() ? nullptr : &c));
    } else {  // another source under the same hash
      TXFN_RETURN_IF_ERROR(
          Prefixed(CheckRegExpCost(source, JsGoal::kModule), StrCat("module '", path, "'")));
      TXFN_ASSIGN_OR_RETURN(
          module,
          CompileSource(path, GuardLongRegExpLiterals(source, JsGoal::kModule).value_or(source),
                        nullptr));
    }
  }
  if (!c.warm && c.source == source) cold_.push_back(ColdModule{std::move(key), *cached, module});
  return module;
}

void ModuleLoader::WarmCodeCaches() {
  for (const ColdModule& m : cold_) {
    std::unique_ptr<v8::ScriptCompiler::CachedData> data(
        v8::ScriptCompiler::CreateCodeCache(m.module->GetUnboundModuleScript()));
    if (data == nullptr || data->length <= 0) continue;
    auto warm = std::make_shared<CompiledModule>();
    warm->source = m.entry->source;
    warm->guarded_source = m.entry->guarded_source;
    warm->code_cache.assign(reinterpret_cast<const char*>(data->data),
                            static_cast<size_t>(data->length));
    warm->warm = true;
    cache_.Put(m.key, std::move(warm));
  }
  cold_.clear();
}

}  // namespace txfn::internal
