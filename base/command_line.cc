#include "base/command_line.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"

namespace fot {
namespace {

// "--input-ids=x" → "--input_ids=x"; values and positional arguments untouched.
std::string UnderscoreFlagName(const std::string& arg) {
  if (arg.size() < 3 || arg[0] != '-' || arg == "--") return arg;
  const size_t start = arg[1] == '-' ? 2 : 1;
  const size_t end = std::min(arg.find('='), arg.size());
  std::string out = arg;
  for (size_t i = start; i < end; ++i) {
    if (out[i] == '-') out[i] = '_';
  }
  return out;
}

}  // namespace

void UsePassiveOpenMpWaits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0);
  execv("/proc/self/exe", argv);
  // execv failed (no /proc?): carry on with the default policy.
}

std::vector<std::string> ParseCommandLine(int argc, char** argv, const char* usage) {
  UsePassiveOpenMpWaits(argv);
  absl::SetProgramUsageMessage(usage);
  std::vector<std::string> storage;
  storage.reserve(argc);
  bool flags_done = false;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    flags_done |= arg == "--";
    storage.push_back(i == 0 || flags_done ? arg : UnderscoreFlagName(arg));
  }
  std::vector<char*> args;
  for (std::string& s : storage) args.push_back(s.data());

  // Unknown flags or bad values: absl prints which and exits with code 1.
  const std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return std::vector<std::string>(positional.begin() + 1, positional.end());
}

}  // namespace fot
