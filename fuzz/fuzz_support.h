// What the harnesses of fuzz/ share: a scratch directory per process, inputs
// made of several parts (several files, several records, several requests),
// and the check that crashes when an invariant fails, so that libFuzzer keeps
// the input. fuzz_models.h has the model and tokenizers.
//
// Not thread-safe: a harness calls these from libFuzzer's one fuzzing thread.
#ifndef FOTSERVE_FUZZ_FUZZ_SUPPORT_H_
#define FOTSERVE_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fot::fuzz {

// Parts of one input are separated by this line. It is text, so that seeds
// stay readable, and it is in fuzz/fot.dict, so that mutations keep it and
// add more parts.
inline constexpr std::string_view kSeparator = "\n--fot-part--\n";

// The parts of `input` between separators (one part for an input without
// one), and the inverse, for writing seeds.
std::vector<std::string_view> SplitParts(std::string_view input);
std::string JoinParts(const std::vector<std::string>& parts);

// The input libFuzzer passes, as text.
inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// A directory private to this process, under /dev/shm when there is one
// (the harnesses write files for every input), removed at exit.
const std::string& ScratchDir();
// <scratch>/<name>, emptied (created if needed).
std::string FreshDir(const std::string& name);
// Writes `bytes` to `path`, creating its parent directories. False if it
// cannot (e.g. a parent is a file: inputs may name such paths).
bool TryWriteFile(const std::string& path, std::string_view bytes);
// TryWriteFile for paths the harness chose: crashes on failure.
void WriteFileOrDie(const std::string& path, std::string_view bytes);

// Crashes, naming the broken invariant: libFuzzer then saves the input.
[[noreturn]] void Fail(const char* file, int line, const std::string& what);
#define FOT_FUZZ_CHECK(condition, what)                              \
  do {                                                               \
    if (!(condition)) ::fot::fuzz::Fail(__FILE__, __LINE__, (what)); \
  } while (0)

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_FUZZ_SUPPORT_H_
