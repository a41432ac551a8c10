// lib/v8/runner_snapshot.h — the function runner's V8 startup snapshot.
//
// Isolates made from it deserialise a fresh context per request with the
// runner's JavaScript environment (the bootstrap) already built, several
// times cheaper than building it.
//
// Thread safety: both functions are thread-safe; the snapshot is made once
// per process, on first use, and never freed.
#ifndef TXFN_LIB_V8_RUNNER_SNAPSHOT_H_
#define TXFN_LIB_V8_RUNNER_SNAPSHOT_H_

#include "v8-isolate.h"

namespace txfn::internal {

// Makes isolates created with `params` start from the runner's startup
// snapshot: sets params->snapshot_blob and params->external_references. The
// snapshot is made on the first call (tens of milliseconds). Returns false,
// leaving params unchanged, if it cannot be made; the runner then builds its
// contexts itself. Isolates made without it work too.
bool UseRunnerSnapshot(v8::Isolate::CreateParams* params);

// Whether isolates and contexts made from the runner's snapshot skip V8's
// rehashing on deserialisation (see SkipRehashing in runner_snapshot.cc).
// False if the snapshot cannot be made, or if this V8 keeps the flag elsewhere.
bool RunnerSnapshotSkipsRehashing();

}  // namespace txfn::internal

#endif  // TXFN_LIB_V8_RUNNER_SNAPSHOT_H_
