#include "fuzz/store_files.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "fuzz/fuzz_support.h"

namespace fot::fuzz {
namespace {

// memory/kv_store_io.cc's checksum: FNV-1a, 64 bits.
uint64_t Fnv1a(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) h = (h ^ b) * 0x100000001b3ull;
  return h;
}

// The file's bytes; "" for anything else (an input may name a directory).
std::string ReadAll(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return "";
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// One MANIFEST line, with a file line's "*" fields filled in (or replaced by
// "*" when `star`).
std::string FixLine(const std::string& line, const std::string& dir, bool star) {
  std::istringstream in(line);
  std::string key, name, size, hash, rest;
  if (!(in >> key >> name >> size >> hash) || key != "file" || std::getline(in, rest)) {
    return line;
  }
  if (star) return "file " + name + " * *";
  if (name.find('/') != std::string::npos) return line;  // only files of `dir`
  const std::string bytes = ReadAll(dir + "/" + name);
  if (size == "*") size = std::to_string(bytes.size());
  if (hash == "*") hash = Hex(Fnv1a(bytes));
  return "file " + name + " " + size + " " + hash;
}

std::string FixLines(std::string_view manifest, const std::string& dir, bool star) {
  std::string out;
  size_t start = 0;
  while (start < manifest.size()) {
    size_t end = manifest.find('\n', start);
    const bool last = end == std::string_view::npos;
    if (last) end = manifest.size();
    out += FixLine(std::string(manifest.substr(start, end - start)), dir, star);
    if (!last) out += '\n';
    start = end + 1;
  }
  return out;
}

bool SafePath(std::string_view path) {
  if (path.empty() || path.size() > 200 || path.front() == '/') return false;
  int levels = 0;
  for (char c : path) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.' || c == '/';
    if (!ok) return false;
    levels += c == '/';
  }
  return levels < 8 && path.find("..") == std::string_view::npos;
}

bool IsManifest(std::string_view path) { return path == "MANIFEST" || path.ends_with("/MANIFEST"); }

}  // namespace

std::vector<std::string> WriteTree(const std::string& root,
                                   const std::vector<std::string_view>& parts) {
  std::vector<std::string> written;
  std::vector<std::pair<std::string, std::string_view>> manifests;
  for (std::string_view part : parts) {
    const size_t newline = part.find('\n');
    const std::string_view path = part.substr(0, newline);
    const std::string_view content =
        newline == std::string_view::npos ? std::string_view() : part.substr(newline + 1);
    if (!SafePath(path)) continue;
    const std::string full = root + "/" + std::string(path);
    if (IsManifest(path)) {
      manifests.emplace_back(full, content);  // after the files it describes
    } else if (TryWriteFile(full, content)) {
      written.emplace_back(path);
    }
  }
  for (const auto& [full, content] : manifests) {
    if (TryWriteFile(full, FillManifest(content, full.substr(0, full.rfind('/'))))) {
      written.push_back(full.substr(root.size() + 1));
    }
  }
  return written;
}

std::string TreePart(const std::string& path, std::string_view content) {
  return path + "\n" + std::string(content);
}

void WriteStore(const std::string& dir, const std::vector<std::string_view>& parts) {
  for (size_t i = 1; i < parts.size() && i < kStoreFileCount; ++i) {
    WriteFileOrDie(dir + "/" + kStoreFiles[i], parts[i]);
  }
  if (!parts.empty()) WriteFileOrDie(dir + "/MANIFEST", FillManifest(parts[0], dir));
}

std::string FillManifest(std::string_view manifest, const std::string& dir) {
  return FixLines(manifest, dir, /*star=*/false);
}

std::string StarManifest(std::string_view manifest) {
  return FixLines(manifest, "", /*star=*/true);
}

}  // namespace fot::fuzz
