// tests/child_process.h — the test binary run again as a child process, in a mode of its
// own, its stdout on a pipe: for tests that kill a process (SIGKILL) and look at what it
// had acknowledged. The child is exec'd (not just forked), so a parent that already
// started V8 or opened databases hands none of that to it.
//
//   int main(int argc, char** argv) {
//     if (argc >= 2 && std::string(argv[1]) == "--serve") return Serve();  // child mode
//     ...RUN_ALL_TESTS...
//   }
//   Child server({"--serve"});
//   std::vector<std::string> lines = server.Read(absl::Seconds(5));
//   server.Kill();
#ifndef TXFN_TESTS_CHILD_PROCESS_H_
#define TXFN_TESTS_CHILD_PROCESS_H_

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace txfn::testing_util {

// A child process running this binary in a mode, its stdout on a pipe.
class Child {
 public:
  explicit Child(const std::vector<std::string>& args) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      std::string self = "/proc/self/exe";
      argv.push_back(self.data());
      std::vector<std::string> copy = args;
      for (std::string& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~Child() {
    Kill();
    if (out_ >= 0) close(out_);
  }
  // The lines available now, or the first ones to come within `wait`.
  std::vector<std::string> Read(absl::Duration wait) {
    std::vector<std::string> lines;
    const absl::Time end = absl::Now() + wait;
    while (lines.empty()) {
      pollfd p{.fd = out_, .events = POLLIN, .revents = 0};
      const int ms =
          static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(end - absl::Now())));
      if (poll(&p, 1, ms) <= 0) break;
      char buf[4096];
      const ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      pending_.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = pending_.find('\n')) != std::string::npos) {
        lines.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
      }
    }
    return lines;
  }
  // Reads until the child closes its stdout (exits).
  std::vector<std::string> ReadAll(absl::Duration limit) {
    std::vector<std::string> all;
    const absl::Time end = absl::Now() + limit;
    while (!eof_ && absl::Now() < end) {
      for (std::string& l : Read(absl::Milliseconds(100))) all.push_back(std::move(l));
    }
    return all;
  }
  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  bool eof_ = false;
  std::string pending_;
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_CHILD_PROCESS_H_
