#include "client/cli.h"

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace fot::client {
namespace {

constexpr char kUsagePayload[] = "fotctl/usage";
constexpr char kInterruptedPayload[] = "fotctl/interrupted";

}  // namespace

absl::Status UsageError(const std::string& message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

absl::Status Interrupted() {
  absl::Status status = absl::CancelledError("interrupted");
  status.SetPayload(kInterruptedPayload, absl::Cord("1"));
  return status;
}

int ExitCode(const absl::Status& status) {
  if (status.ok()) return 0;
  if (status.GetPayload(kInterruptedPayload).has_value()) return 130;
  return IsUsageError(status) ? 2 : 1;
}

std::string ErrorLine(const absl::Status& status) {
  std::string line(status.message());
  if (line.empty()) line = absl::StatusCodeToString(status.code());
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

std::string DashedFlag(const std::string& name) {
  std::string out = "--" + name;
  for (char& c : out) {
    if (c == '_') c = '-';
  }
  return out;
}

absl::StatusOr<CommandLine> ScanCommandLine(int argc, char** argv) {
  CommandLine line;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      line.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    const size_t start = arg[1] == '-' ? 2 : 1;
    const size_t equals = arg.find('=');
    std::string name =
        arg.substr(start, equals == std::string::npos ? std::string::npos : equals - start);
    for (char& c : name) {
      if (c == '-') c = '_';
    }
    const bool has_value = equals != std::string::npos;
    std::string value = has_value ? arg.substr(equals + 1) : "";

    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    bool negated = false;
    if (flag == nullptr && name.rfind("no", 0) == 0) {
      flag = absl::FindCommandLineFlag(name.substr(2));
      negated = flag != nullptr && flag->IsOfType<bool>();
      if (!negated) flag = nullptr;
    }
    if (flag == nullptr || flag->IsRetired()) {
      return UsageError(absl::StrCat("unknown flag ", arg.substr(0, equals)));
    }
    const std::string canonical(flag->Name());
    if (flag->IsOfType<bool>()) {
      if (negated && has_value) return UsageError(absl::StrCat(arg, ": --no<flag> takes no value"));
      if (negated) value = "false";
      if (!has_value && !negated) value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) return UsageError(absl::StrCat(DashedFlag(canonical), " needs a value"));
      value = argv[++i];
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      // absl's own message only repeats the value and the flag's name.
      const bool plain = error.rfind("Illegal value", 0) == 0;
      return UsageError(absl::StrCat("bad value '", value, "' for ", DashedFlag(canonical),
                                     plain ? "" : ": " + error));
    }
    line.flags[canonical].push_back(value);
  }
  return line;
}

absl::Status CheckFlagsApply(const CommandLine& line, const std::set<std::string>& allowed,
                             const std::set<std::string>& global, const std::string& command) {
  for (const auto& [name, values] : line.flags) {
    if (allowed.count(name) == 0 && global.count(name) == 0) {
      return UsageError(absl::StrCat(DashedFlag(name), " does not apply to '", command, "'"));
    }
  }
  return absl::OkStatus();
}

std::string Unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char next = text[++i];
    switch (next) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      default:
        out += '\\';
        out += next;
        break;
    }
  }
  return out;
}

}  // namespace fot::client
