// tools/demo_queue.h — txfn-demo's queue phase: queued calls under a spiky
// load, with a downstream service of fixed capacity that fails for a while.
//
// One tenant runs a small jobs app (inline in demo_queue.cc): jobs:record, a
// reserved mutation that counts how often each job id was applied;
// jobs:backfill, an opportunistic mutation with a deadline of 5 s; and
// jobs:notify, an action that declares the service "mailer", calls it
// (ctx.services.mailer) and records the delivery with ctx.runMutation. The
// host's mailer takes a fixed number of calls per 100 ms (beyond that it
// answers ResourceExhausted) and is down (Unavailable) for 15% of the load,
// in its middle; the engine's AIMD limiter for it has a 250 ms window.
//
// The engine's quotas are unlimited unless configured
// (QueuedCallOptions::function_defaults, or a function's reservedCpuQuota /
// opportunisticRate), so the quota classes differ here by their deadlines;
// jobs:backfill also declares low criticality: the scheduler orders buffered
// calls by criticality, then deadline, so reserved calls go first.
//
// Client threads submit (Engine::Submit) on a square wave of whole seconds,
// peak first: 4x the trough's rate, then the trough's. A line per second
// shows the calls received and executed, the utilization of the queued-call
// slots, the RunQ, the backlog and the mailer's AIMD limit. Once the load
// stops the phase waits for the queue to drain, then prints a summary:
// reserved deadline misses (goal 0), opportunistic calls finished by their
// deadlines, executed vs received peak/trough, seconds the mailer was
// overloaded, calls lost (goal 0) and mutations applied twice (goal 0).
//
// Thread safety: RunQueuePhase is not reentrant (it prints to stdout).
#ifndef TXFN_TOOLS_DEMO_QUEUE_H_
#define TXFN_TOOLS_DEMO_QUEUE_H_

#include <cstdint>
#include <string>

namespace txfn::tools {

struct QueuePhaseOptions {
  double duration_s = 10;    // the load's length; the drain comes after it
  double trough_rate = 300;  // calls submitted per second at the trough; the peak is 4x
  int mailer_capacity = 4;   // calls the mailer accepts per 100 ms
  int workers = 2;           // the engine's isolate workers
  int clients = 8;           // client threads submitting
  std::string sqlite_path;   // the engine's SQLite file; empty: in memory
  uint64_t seed = 1;
};

// Runs the phase and prints its live lines and summary. Returns 0 when every
// call ended, none was applied twice and none failed unexpectedly (the
// deadline goals are printed as met or missed, not failed on), else 1.
int RunQueuePhase(const QueuePhaseOptions& options);

}  // namespace txfn::tools

#endif  // TXFN_TOOLS_DEMO_QUEUE_H_
