// Test-only V8 helpers: a process-wide platform and an IsolateLease that owns
// its own isolate, so the runner can be tested without the IsolateScheduler.
#ifndef TXFN_TESTS_V8_TEST_UTIL_H_
#define TXFN_TESTS_V8_TEST_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "lib/v8/runner_core.h"
#include "txfn/isolate_scheduler.h"
#include "v8.h"

namespace txfn::testing_util {

// Initialises V8 once per process (txfn's own platform).
inline void InitV8ForTests() {
  absl::Status s = InitializeV8();
  (void)s;  // idempotent; an error here shows up as a failing isolate
}

// How a TestLease makes its isolate: from the function runner's startup
// snapshot (what IsolateScheduler does by default) or from V8's own.
enum class TestSnapshot { kRunner, kPlain };

// An isolate of one tenant, entered and locked for the lease's lifetime, with
// a HandleScope open: what an IsolateScheduler work item gets.
class TestLease : public IsolateLease {
 public:
  explicit TestLease(std::string tenant, TestSnapshot snapshot = TestSnapshot::kRunner)
      : tenant_(std::move(tenant)) {
    InitV8ForTests();
    allocator_.reset(v8::ArrayBuffer::Allocator::NewDefaultAllocator());
    v8::Isolate::CreateParams params;
    params.array_buffer_allocator = allocator_.get();
    if (snapshot == TestSnapshot::kRunner && !internal::UseRunnerSnapshot(&params)) {
      std::fputs("cannot make the function runner's startup snapshot\n", stderr);
      std::abort();
    }
    isolate_ = v8::Isolate::New(params);
    isolate_->SetMicrotasksPolicy(v8::MicrotasksPolicy::kExplicit);
    locker_ = std::make_unique<v8::Locker>(isolate_);
    isolate_->Enter();
    scope_.emplace(isolate_);
  }
  ~TestLease() override {
    data_.reset();
    scope_.reset();
    isolate_->Exit();
    locker_.reset();
    isolate_->Dispose();
  }

  v8::Isolate* isolate() override { return isolate_; }
  const std::string& tenant() const override { return tenant_; }
  bool reused() const override { return uses_ > 0; }
  IsolateData* data() override { return data_.get(); }
  void set_data(std::unique_ptr<IsolateData> data) override { data_ = std::move(data); }
  bool limit_exceeded() const override { return false; }
  std::string exceeded_limit() const override { return ""; }
  void Discard() override { discarded_ = true; }

  // Marks the end of one request (the next one sees reused() == true).
  void Finish() { ++uses_; }
  bool discarded() const { return discarded_; }

 private:
  std::string tenant_;
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator_;
  v8::Isolate* isolate_ = nullptr;
  std::unique_ptr<v8::Locker> locker_;
  std::optional<v8::HandleScope> scope_;
  std::unique_ptr<IsolateData> data_;
  int uses_ = 0;
  bool discarded_ = false;
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_V8_TEST_UTIL_H_
