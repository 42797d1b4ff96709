// Saved memory stores (memory/kv_store_io.cc) and whole directory trees of
// them (a saved session, a data directory) written from fuzz inputs.
//
// A store's MANIFEST lists each file's size and FNV-1a checksum, and Load
// verifies them before it parses anything: a mutated index.faiss would never
// get past that. So a MANIFEST line "file NAME SIZE HASH" of an input may
// write "*" for SIZE or HASH, which this fills in from the file as written;
// seeds do, and then mutations of the files reach the parsers behind the
// checksums. A line with real numbers is kept, for the checks themselves.
#ifndef FOTSERVE_FUZZ_STORE_FILES_H_
#define FOTSERVE_FUZZ_STORE_FILES_H_

#include <string>
#include <string_view>
#include <vector>

namespace fot::fuzz {

// The files of a saved store, in the order the inputs give them.
inline constexpr const char* kStoreFiles[] = {"MANIFEST",       "index.faiss", "values.bin",
                                              "provenance.bin", "deleted.bin", "overflow.bin"};
inline constexpr size_t kStoreFileCount = 6;

// Writes a store into `dir` from `parts` (kStoreFiles order; missing parts
// leave their files out), the MANIFEST last with its "*" filled in.
void WriteStore(const std::string& dir, const std::vector<std::string_view>& parts);

// The MANIFEST `manifest` with every "*" SIZE or HASH filled in from the
// files in `dir`.
std::string FillManifest(std::string_view manifest, const std::string& dir);

// A tree of files: each part is "PATH\nCONTENT", PATH relative to `root`
// (letters, digits, '_', '-', '.', '/'; no "..", at most 8 levels). Parts
// with another PATH are skipped. Every file named MANIFEST is written last,
// with FillManifest. Returns the paths written.
std::vector<std::string> WriteTree(const std::string& root,
                                   const std::vector<std::string_view>& parts);
// The part of a file for WriteTree.
std::string TreePart(const std::string& path, std::string_view content);

// Replaces the SIZE and HASH of every file line of a real MANIFEST with "*":
// what seeds store.
std::string StarManifest(std::string_view manifest);

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_STORE_FILES_H_
