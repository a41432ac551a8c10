#include "lib/v8/runner_snapshot.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lib/v8/isolate_runtime.h"
#include "lib/v8/js_strings.h"
#include "lib/v8/platform.h"
#include "txfn/function_runner.h"
#include "txfn/isolate_customizer.h"
#include "txfn/isolate_scheduler.h"
#include "v8.h"

namespace txfn::internal {
namespace {

// Marks `blob` as not to be rehashed when deserialised, if it can be done
// safely; otherwise leaves it as it is.
//
// Why: V8 gives every process a random hash seed (so hash flooding cannot be
// planned) and, by default, re-sorts every hash table and descriptor array of
// a snapshot as it deserialises it, in case the snapshot was hashed with
// another seed. For a context made per request that costs ~14% of the
// request. This blob is made in this process, from an isolate using this
// process's seed, so its tables are already in order, and every isolate of
// the process uses that same seed: txfn's platform fixes it at V8's
// initialisation (--hash-seed, random per process; platform.cc), so a
// read-only heap rebuilt after the last isolate died gets it again. Rehashing
// would change nothing. Only done when that holds (V8HashSeedIsFixed).
//
// How: V8 10.2 keeps the flag in the blob's second header word, outside the
// checksummed content. The public API confirms the change (CanBeRehashed
// false, IsValid true) or the word is restored.
void SkipRehashing(v8::StartupData& blob) {
  constexpr size_t kRehashabilityOffset = sizeof(uint32_t);  // after the context count
  if (!blob.CanBeRehashed() || blob.raw_size < static_cast<int>(2 * sizeof(uint32_t))) return;
  // CreateBlob allocated the data with new[]; it is ours to change.
  char* word = const_cast<char*>(blob.data) + kRehashabilityOffset;
  uint32_t before;
  std::memcpy(&before, word, sizeof before);
  const uint32_t never = 0;
  std::memcpy(word, &never, sizeof never);
  if (blob.CanBeRehashed() || !blob.IsValid()) std::memcpy(word, &before, sizeof before);
}

// The runner's startup snapshot: V8's default context, plus a context with the
// bootstrap already run (its exports and kSnapshotMarker attached), with the
// bootstrap's compiled code kept. nullptr if it cannot be made.
const v8::StartupData* CreateRunnerSnapshot() {
  (void)V8Platform();  // initialises V8 if nobody did yet
  v8::SnapshotCreator creator(IsolateRuntime::ExternalReferences());
  v8::Isolate* isolate = creator.GetIsolate();
  bool ok = false;
  {
    v8::HandleScope scope(isolate);
    creator.SetDefaultContext(v8::Context::New(isolate));
    v8::Local<v8::Context> context = v8::Context::New(isolate);
    if (!context.IsEmpty()) {
      v8::Context::Scope context_scope(context);
      absl::StatusOr<v8::Local<v8::Object>> exports = IsolateRuntime::Bootstrap(isolate, context);
      if (exports.ok()) {
        ok = creator.AddData(context, *exports) == kSnapshotExportsIndex &&
             creator.AddData(context, MessageString(isolate, kSnapshotMarker)) ==
                 kSnapshotMarkerIndex;
      }
    }
    if (ok) ok = creator.AddContext(context) == kSnapshotContextIndex;
  }
  v8::StartupData blob = creator.CreateBlob(v8::SnapshotCreator::FunctionCodeHandling::kKeep);
  if (!ok || blob.data == nullptr || blob.raw_size <= 0) {
    delete[] blob.data;
    return nullptr;
  }
  // Only when the process's hash seed is fixed (txfn's own platform): with a
  // host's platform V8 may draw another seed later (see platform.cc).
  if (V8HashSeedIsFixed()) SkipRehashing(blob);
  return new v8::StartupData(blob);
}

// Made once per process and never freed (isolates made from it may outlive
// any owner); immutable once made. nullptr if it cannot be made.
const v8::StartupData* RunnerSnapshot() {
  static const v8::StartupData* const blob = CreateRunnerSnapshot();
  return blob;
}

// The function runner's isolates: made from its startup snapshot (when it
// can be made; else V8's, and the runner bootstraps each context itself),
// with Atomics.wait refused from the start (IsolateRuntime refuses it again,
// for isolates made without this customizer).
class RunnerIsolateCustomizer final : public IsolateCustomizer {
 public:
  void ConfigureCreateParams(const std::string& /*tenant*/,
                             v8::Isolate::CreateParams* params) const override {
    (void)UseRunnerSnapshot(params);
  }
  void CustomizeIsolate(const std::string& /*tenant*/, v8::Isolate* isolate) const override {
    isolate->SetAllowAtomicsWait(false);
  }
};

}  // namespace

bool RunnerSnapshotSkipsRehashing() {
  const v8::StartupData* blob = RunnerSnapshot();
  return blob != nullptr && !blob->CanBeRehashed();
}

bool UseRunnerSnapshot(v8::Isolate::CreateParams* params) {
  const v8::StartupData* blob = RunnerSnapshot();
  if (blob == nullptr) return false;
  // CreateParams takes a non-const pointer; V8 only reads the blob.
  params->snapshot_blob = const_cast<v8::StartupData*>(blob);
  params->external_references = IsolateRuntime::ExternalReferences();
  return true;
}

}  // namespace txfn::internal

namespace txfn {

std::shared_ptr<const IsolateCustomizer> FunctionRunnerIsolateCustomizer() {
  // Never destroyed: schedulers may outlive any static owner.
  static const auto* const customizer = new std::shared_ptr<const IsolateCustomizer>(
      std::make_shared<const internal::RunnerIsolateCustomizer>());
  return *customizer;
}

}  // namespace txfn
