// fotctl's command-line conventions: usage errors (exit code 2) versus
// failures (exit code 1), and a strict pass over argv that rejects unknown
// flags and bad values with one line before absl parses them, and collects
// every value of a repeatable flag (--stop a --stop b).
//
// Thread safety: plain functions; call from main before any other thread.
#ifndef FOTSERVE_CLIENT_CLI_H_
#define FOTSERVE_CLIENT_CLI_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fot::client {

// A mistake in the command line; fotctl exits with code 2.
absl::Status UsageError(const std::string& message);
bool IsUsageError(const absl::Status& status);

// The user pressed Ctrl-C; fotctl exits with code 130, as shells do.
absl::Status Interrupted();

// 0 for OK, 2 for usage errors, 130 when interrupted, 1 for everything else.
int ExitCode(const absl::Status& status);

// The one line fotctl prints for `status` (without the "fotctl: " prefix):
// the message, with newlines folded into spaces.
std::string ErrorLine(const absl::Status& status);

struct CommandLine {
  std::vector<std::string> positional;  // program name excluded
  // Underscored names of the flags given, each with its values in order
  // (bool flags: "true"/"false").
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

// Reads argv the way absl does (--name=value, --name value, --bool,
// --nobool, dashes or underscores in names, "--" ends flags, "-" is a
// positional argument) and checks every flag against absl's registry and its
// type. UsageError names the first unknown flag, missing value or bad value.
absl::StatusOr<CommandLine> ScanCommandLine(int argc, char** argv);

// UsageError when a flag in `line` is neither in `allowed` nor in `global`,
// e.g. "--temperature does not apply to 'sessions ls'".
absl::Status CheckFlagsApply(const CommandLine& line, const std::set<std::string>& allowed,
                             const std::set<std::string>& global, const std::string& command);

// Expands the escapes \n, \t, \r, \\ in a flag value (so --stop '\n' works).
std::string Unescape(const std::string& text);

// The underscored flag name written back as users type it: "max_tokens" →
// "--max-tokens".
std::string DashedFlag(const std::string& name);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_CLI_H_
