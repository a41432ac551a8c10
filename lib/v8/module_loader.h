// lib/v8/module_loader.h — a tenant's ES modules in a runner context.
//
// Resolves "module:export" names and import specifiers against the modules
// stored in the tenant's metadata, compiles them through the process-wide
// code cache (an AsyncLruCache keyed by tenant, path and source), and links
// and evaluates them in a context (one helper for the request path and the
// deploy check).
//
// Thread safety: ModuleLoader is used on one isolate's thread, for one
// request; the cache it is given is thread-safe.
#ifndef TXFN_LIB_V8_MODULE_LOADER_H_
#define TXFN_LIB_V8_MODULE_LOADER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lib/v8/isolate_runtime.h"
#include "lib/v8/regexp_literals.h"
#include "txfn/async_lru_cache.h"
#include "txfn/function_runner.h"
#include "txfn/tenant_metadata.h"
#include "txfn/transaction.h"
#include "v8.h"

namespace txfn::internal {

// Compiled module: the source it was compiled from (to rule out hash
// collisions) and V8's code cache for it. A cold code cache (made right after
// compiling) holds only the module's top-level code; the runner replaces it,
// once, by a warm one made after the module first ran successfully, which
// also holds the functions that run compiled (so they are not compiled again
// in every fresh context).
struct CompiledModule {
  std::string source;
  // What V8 compiled when it is not `source`: long regexp literals guarded
  // (GuardLongRegExpLiterals).
  std::string guarded_source;
  std::string code_cache;
  bool warm = false;

  const std::string& text() const { return guarded_source.empty() ? source : guarded_source; }
};

using ModuleCache = AsyncLruCache<std::string, CompiledModule>;

// "a/./b/../c" -> "a/c"; nullopt if ".." leaves the root or nothing is left.
std::optional<std::string> NormalizePath(std::string_view path);

// The stored module path `spec` (imported from `referrer`, or "" for a
// function name) names, trying "<path>" then "<path>.js".
std::optional<std::string> ResolveModule(const TenantMetadata& metadata, std::string_view referrer,
                                         std::string_view spec);

// A hash of the tenant's modules (paths and sources), to tell whether a kept
// context still runs the current code.
size_t ModulesFingerprint(const TenantMetadata& metadata);

class ModuleLoader {
 public:
  ModuleLoader(ModuleCache& cache, IsolateRuntime& rt, const Transaction& txn, RunStats& stats)
      : cache_(cache), rt_(rt), isolate_(rt.isolate()), txn_(txn), stats_(stats) {}

  // Compiles (through the code cache) and registers `path` and its imports in
  // `cs`, whose context is entered. NotFound for an import naming no module.
  absl::StatusOr<v8::Local<v8::Module>> Load(ContextState& cs, const std::string& path);

  // Links and evaluates `module` (loaded into `cs`) and drains the context's
  // microtasks. On an exception, returns `js_error()` (the caller maps the
  // TryCatch it holds, and terminations); a rejected top level is its
  // reason's status. A graph with a top-level await is refused
  // (InvalidArgument, naming the modules that await) before anything runs:
  // V8 10.2 aborts the process when a termination (a deadline, a limit)
  // lands as it starts such a module, and nothing can hold terminations back
  // over that (the module's code runs between).
  absl::Status Evaluate(ContextState& cs, v8::Local<v8::Module> module, std::string_view path,
                        const std::function<absl::Status()>& js_error);

  // After a successful request: replaces the cold code caches of the modules
  // it loaded by warm ones, which include the functions compiled while it ran.
  void WarmCodeCaches();

 private:
  struct ColdModule {
    std::string key;
    std::shared_ptr<const CompiledModule> entry;
    v8::Local<v8::Module> module;
  };

  v8::Local<v8::Module> ServerModule(ContextState& cs);
  // Which modules of `root`'s graph (loaded into `cs`, instantiated) await at
  // their top level, for an error: "in 'a.js', 'b.js'" (V8 tells only whether
  // a module's graph awaits: one whose imports' graphs do not awaits itself),
  // or "in one of ..." for modules that import each other.
  std::string AwaitingModules(ContextState& cs, std::string_view root);
  static v8::MaybeLocal<v8::Value> EvaluateServer(v8::Local<v8::Context> context,
                                                  v8::Local<v8::Module> module);
  static v8::MaybeLocal<v8::Module> ResolveCallback(v8::Local<v8::Context> context,
                                                    v8::Local<v8::String> specifier,
                                                    v8::Local<v8::FixedArray> assertions,
                                                    v8::Local<v8::Module> referrer);
  absl::StatusOr<v8::Local<v8::Module>> CompileSource(const std::string& path,
                                                      const std::string& source,
                                                      const CompiledModule* cached);
  absl::StatusOr<v8::Local<v8::Module>> Compile(const std::string& path, const std::string& source);

  ModuleCache& cache_;
  IsolateRuntime& rt_;
  v8::Isolate* isolate_;
  const Transaction& txn_;
  RunStats& stats_;
  std::vector<ColdModule> cold_;  // loaded from (or made as) a cold code cache
};

// The bootstrap's MAX_REGEXP_ESCAPES, for source compiled from text (a
// module's literals, eval and Function): V8 parses a regexp literal without
// an interrupt check, and a Unicode property escape or a named group costs
// far more than its text (bootstrap_js.h, "RegExp compilation"). Counted in
// the whole source: text that only looks like one counts too, which errs on
// the safe side.
inline constexpr size_t kMaxRegExpEscapes = 1000;
// The bootstrap's MAX_REGEXP_FOLDED: with the `i` flag V8 case-folds each character class
// (over the BMP; with `u` too, over all of Unicode, 5 ms a class), uninterrupted, when it
// compiles the regexp. A literal with `i` counts its classes and escapes against
// kMaxRegExpEscapes, or with `i` and `u` against this.
inline constexpr size_t kMaxRegExpFolded = 100;

// ResourceExhausted when `source` has more than kMaxRegExpEscapes of either, or a regexp
// literal with the `i` flag more classes than the limits above; InvalidArgument for a literal
// that needs the guard (RegExpNeedsGuard) in a Function constructor's parameters, where it
// cannot be rewritten, and for a `/` the literal lexer cannot place (AmbiguousSlash, named
// by its line).
[[nodiscard]] absl::Status CheckRegExpCost(std::string_view source, JsGoal goal);

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_MODULE_LOADER_H_
