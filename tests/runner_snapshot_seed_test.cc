// The runner's startup snapshot is deserialised without V8's rehashing
// (runner_core.cc, SkipRehashing). That is only sound if every isolate of the
// process hashes with the seed the snapshot was made with, also after the
// process-wide read-only heap was dropped (no isolate alive) and rebuilt by
// an isolate from V8's own snapshot. Its own binary: the test needs to
// control which isolates are alive.
#include <string>

#include "gtest/gtest.h"
#include "lib/v8/runner_core.h"
#include "tests/v8_test_util.h"
#include "v8.h"

namespace txfn {
namespace {

using testing_util::TestLease;
using testing_util::TestSnapshot;

// Runs a script that depends on hashed lookups (globals, builtins'
// properties, internalized strings, dictionary-mode objects) in a new context
// of `lease`'s isolate; returns its string result.
std::string Probe(TestLease& lease) {
  v8::Isolate* isolate = lease.isolate();
  v8::HandleScope scope(isolate);
  v8::Local<v8::Context> context = v8::Context::New(isolate);
  v8::Context::Scope context_scope(context);
  v8::TryCatch try_catch(isolate);
  const char* source = R"JS(
    const d = {}; for (let i = 0; i < 500; i++) d['k' + i] = i; delete d.k3;
    [typeof Math.max, JSON.stringify({a: 1}), 'abc'.toUpperCase(), d.k499,
     typeof globalThis.Array, new Map([['x', 1]]).get('x')].join(','))JS";
  v8::Local<v8::Script> script;
  v8::Local<v8::Value> result;
  if (!v8::Script::Compile(context, v8::String::NewFromUtf8(isolate, source).ToLocalChecked())
           .ToLocal(&script) ||
      !script->Run(context).ToLocal(&result)) {
    return "threw";
  }
  return *v8::String::Utf8Value(isolate, result);
}

constexpr const char* kExpected = "function,{\"a\":1},ABC,499,function,1";

TEST(RunnerSnapshotSeedTest, SnapshotIsolatesAgreeWithPlainOnesAfterTheReadOnlyHeapIsRebuilt) {
  testing_util::InitV8ForTests();
  ASSERT_TRUE(internal::RunnerSnapshotSkipsRehashing());  // made now; its isolate is gone
  for (int round = 0; round < 3; ++round) {
    // No isolate is alive: a plain isolate rebuilds the read-only heap first.
    TestLease plain("plain", TestSnapshot::kPlain);
    EXPECT_EQ(Probe(plain), kExpected);
    {
      TestLease runner("runner", TestSnapshot::kRunner);
      EXPECT_EQ(Probe(runner), kExpected) << "round " << round;
    }
  }
  // And the other order.
  TestLease runner("runner", TestSnapshot::kRunner);
  EXPECT_EQ(Probe(runner), kExpected);
  TestLease plain("plain", TestSnapshot::kPlain);
  EXPECT_EQ(Probe(plain), kExpected);
}

}  // namespace
}  // namespace txfn
