// A fresh temporary directory for a test, removed (recursively) when it goes:
// shared by the SqliteStorage and the queue-side tests.
#ifndef TXFN_TESTS_TEMP_DIR_H_
#define TXFN_TESTS_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace txfn::testing_util {

// A fresh directory under the test temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "txfn_sqlite_") {
    std::string pattern = ::testing::TempDir() + prefix + "XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp(" << pattern << ") failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace txfn::testing_util

#endif  // TXFN_TESTS_TEMP_DIR_H_
