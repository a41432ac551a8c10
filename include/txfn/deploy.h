// txfn/deploy.h — the deploy check: a tenant's new modules and schema are
// installed only if every module compiles, links and evaluates, and every
// existing document fits the new schema.
//
// A deploy is one system transaction on the tenant (OpenTenant,
// tenant_committers.h): StageDeploy writes the schema and modules into it
// (refusing a schema the existing documents do not fit), CheckDeploy loads
// the staged modules on a FunctionRunner, and only then is it committed. The
// Engine deploys this way; a host with its own runner calls DeployTenant:
//
//   TXFN_ASSIGN_OR_RETURN(std::shared_ptr<txfn::OpenTenant> shop, tenants.Get("shop"));
//   TXFN_ASSIGN_OR_RETURN(txfn::Schema schema, txfn::Schema::FromJson(schema_json));
//   TXFN_RETURN_IF_ERROR(txfn::DeployTenant(*shop, runner, {{"cart.js", source}}, schema));
//
// Errors (a refused deploy leaves the old version serving): InvalidArgument
// naming the problem ("deploy refused: ..."; a bad module path, a schema the
// documents do not fit, a module that does not compile, link or evaluate),
// FailedPrecondition (dropping a table that still has documents),
// ResourceExhausted (a limit, or the scheduler refused the check),
// Unavailable (storage), NotFound (the tenant was deleted meanwhile).
//
// Thread safety: the functions are thread-safe; concurrent deploys of one
// tenant are serialised by its committer (one wins, the other retries).
#ifndef TXFN_DEPLOY_H_
#define TXFN_DEPLOY_H_

#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "txfn/function_runner.h"
#include "txfn/retry.h"
#include "txfn/schema.h"
#include "txfn/tenant_committers.h"
#include "txfn/transaction.h"

namespace txfn {

// The largest source one module may have, and all of a deploy's modules together. V8 parses a
// module in one step that no limit interrupts (a 120 MB array literal: 29 s at 2.5 GB), so a
// deploy far past what applications ship is refused before anything is compiled; a bundled
// application of a few MiB is well within both.
inline constexpr size_t kMaxModuleBytes = size_t{8} << 20;
inline constexpr size_t kMaxDeployBytes = size_t{32} << 20;

// Writes `schema` and `modules` (path -> source; modules of the tenant not
// listed are removed) into `txn`. InvalidArgument for an empty path or one
// with ':', a module over kMaxModuleBytes or modules over kMaxDeployBytes in
// all; the schema's own refusal prefixed "deploy refused: schema: ".
// Needs no V8.
[[nodiscard]] absl::Status StageDeploy(Transaction& txn,
                                       const std::map<std::string, std::string>& modules,
                                       const Schema& schema);

// Compiles, links and evaluates (top level) every module `txn` would install,
// on `runner` (FunctionRunner::CheckModules on a snapshot with txn's
// metadata). InvalidArgument "deploy refused: <module's error>", or the
// runner's ResourceExhausted / Unavailable as they are.
// Every function's attributes (its wrapper's criticality, quota, ...) must
// parse (ParseFunctionAttributes, <txfn/call_records.h>): InvalidArgument
// "deploy refused: mutation m:f: <what is wrong>" otherwise.
[[nodiscard]] absl::Status CheckDeploy(FunctionRunner& runner, const Transaction& txn);
// CheckDeploy, returning the functions the modules export
// (FunctionRunner::DescribeFunctions).
[[nodiscard]] absl::StatusOr<std::map<std::string, FunctionInfo>> DescribeDeploy(
    FunctionRunner& runner, const Transaction& txn);

// Records `functions` (DescribeDeploy's answer for the modules `txn` stages)
// in `txn` as the tenant's exports (TenantMetadata::functions): an engine
// then checks a mutation's ctx.scheduler calls against them from its first
// mutation after it opens, without running the modules (without them, only
// once it has described the modules for a call of the tenant). Call it after
// StageDeploy; changing a module afterwards drops them.
[[nodiscard]] absl::Status RecordFunctions(Transaction& txn,
                                           const std::map<std::string, FunctionInfo>& functions);
// The encoding RecordFunctions writes, and back (InvalidArgument if malformed).
[[nodiscard]] Value FunctionsToValue(const std::map<std::string, FunctionInfo>& functions);
[[nodiscard]] absl::StatusOr<std::map<std::string, FunctionInfo>> FunctionsFromValue(
    const Value& value);

// StageDeploy + DescribeDeploy + RecordFunctions in one system transaction on
// `tenant`, committed (OpenTenant::CommitSystemTransaction, retried on
// conflict per `retry`, with `on_conflict(will_retry)` per conflict). With
// `functions`, also the functions the deployed modules export.
[[nodiscard]] absl::Status DeployTenant(
    OpenTenant& tenant, FunctionRunner& runner, const std::map<std::string, std::string>& modules,
    const Schema& schema, const RetryOptions& retry = {.max_attempts = 8},
    const std::function<void(bool will_retry)>& on_conflict = nullptr,
    std::map<std::string, FunctionInfo>* functions = nullptr);

}  // namespace txfn

#endif  // TXFN_DEPLOY_H_
