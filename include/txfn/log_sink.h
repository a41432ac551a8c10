// txfn/log_sink.h — where txfn's servers (FunctionsServer, RunnerServer, `txfn serve`) write
// their log lines: a function the host replaces with its own logger.
//
//   options.log = [](txfn::LogLevel level, std::string_view line) {
//     my_logger.Write(txfn::LogLevelName(level), line);
//   };
//
// Thread safety: a sink is called from any of the server's threads, possibly at once; it
// must be thread-safe (StderrLogSink is: one fprintf per line).
#ifndef TXFN_LOG_SINK_H_
#define TXFN_LOG_SINK_H_

#include <functional>
#include <string_view>

#include "txfn/errors.h"  // LogLevel

namespace txfn {

using LogSink = std::function<void(LogLevel level, std::string_view line)>;

// Lines "txfn [LEVEL] line" on stderr.
LogSink StderrLogSink();

}  // namespace txfn

#endif  // TXFN_LOG_SINK_H_
