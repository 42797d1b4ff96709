// The main of every test binary. ctest runs each test in its own process, in
// parallel; giving each process its own ::testing::TempDir() (through
// TEST_TMPDIR) keeps tests that write files from racing each other.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "base/command_line.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  // ctest runs two test processes at once on two cores: sleeping OpenMP waits
  // keep them from spinning against each other (see command_line.h).
  fot::UsePassiveOpenMpWaits(argv);
  ::testing::InitGoogleTest(&argc, argv);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fotserve_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  setenv("TEST_TMPDIR", dir.c_str(), /*overwrite=*/1);
  const int result = RUN_ALL_TESTS();
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return result;
}
