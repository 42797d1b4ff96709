// Command-line parsing shared by the project's tools. Flags are declared with
// ABSL_FLAG (underscored names); users may also write them with dashes, as
// the docs do: --input-ids and --input_ids are the same flag.
#ifndef FOTSERVE_SRC_COMMAND_LINE_H_
#define FOTSERVE_SRC_COMMAND_LINE_H_

#include <string>
#include <vector>

namespace fot {

// Parses argv into the program's absl flags (after turning dashes in flag
// names into underscores) and returns the positional arguments, program name
// excluded. Unknown flags or bad values print one line and exit (code 1);
// --help prints usage and exits.
std::vector<std::string> ParseCommandLine(int argc, char** argv, const char* usage);

}  // namespace fot

#endif  // FOTSERVE_SRC_COMMAND_LINE_H_
