// Command-line parsing shared by the project's tools. Flags are declared with
// ABSL_FLAG (underscored names); users may also write them with dashes, as
// the docs do: --input-ids and --input_ids are the same flag.
#ifndef FOTSERVE_BASE_COMMAND_LINE_H_
#define FOTSERVE_BASE_COMMAND_LINE_H_

#include <string>
#include <vector>

namespace fot {

// Makes OpenMP threads sleep rather than spin while they wait, by restarting
// the process with OMP_WAIT_POLICY=passive unless the variable is already set
// (libgomp reads it once, before main). Spinning waits win a few microseconds
// per parallel region on an idle machine but collapse throughput by 10x as soon
// as other work shares the cores (measured: 8.3k vs 0.76k tokens/s), which is
// the normal state of a server. Call first thing in main; returns only when
// the variable is set.
void UsePassiveOpenMpWaits(char** argv);

// Parses argv into the program's absl flags (after turning dashes in flag
// names into underscores) and returns the positional arguments, program name
// excluded. Unknown flags or bad values print one line and exit (code 1);
// --help prints usage and exits. Calls UsePassiveOpenMpWaits first.
std::vector<std::string> ParseCommandLine(int argc, char** argv, const char* usage);

}  // namespace fot

#endif  // FOTSERVE_BASE_COMMAND_LINE_H_
