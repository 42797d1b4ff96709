#include "fuzz/fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace fot::fuzz {
namespace {

namespace fs = std::filesystem;

void RemoveScratch() {
  std::error_code ignored;
  fs::remove_all(ScratchDir(), ignored);
}

}  // namespace

std::vector<std::string_view> SplitParts(std::string_view input) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t at = input.find(kSeparator);
    parts.push_back(input.substr(0, at));
    if (at == std::string_view::npos) return parts;
    input.remove_prefix(at + kSeparator.size());
  }
}

std::string JoinParts(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += kSeparator;
    out += parts[i];
  }
  return out;
}

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    std::error_code ec;
    const std::string root =
        fs::is_directory("/dev/shm", ec) ? "/dev/shm" : fs::temp_directory_path().string();
    auto* path = new std::string(root + "/fot-fuzz-" + std::to_string(getpid()));
    fs::remove_all(*path, ec);
    fs::create_directories(*path);
    std::atexit(RemoveScratch);
    return path;
  }();
  return *dir;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = ScratchDir() + "/" + name;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) Fail(__FILE__, __LINE__, "cannot create " + dir + ": " + ec.message());
  return dir;
}

bool TryWriteFile(const std::string& path, std::string_view bytes) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  return static_cast<bool>(out);
}

void WriteFileOrDie(const std::string& path, std::string_view bytes) {
  if (!TryWriteFile(path, bytes)) Fail(__FILE__, __LINE__, "cannot write " + path);
}

void Fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace fot::fuzz
