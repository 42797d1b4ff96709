// The seed writers of fuzz-seeds (make_seeds.cc), one per harness: each
// writes files of its harness's input format (the harness's header comment
// describes it) into `dir`.
#ifndef FOTSERVE_FUZZ_SEED_WRITERS_H_
#define FOTSERVE_FUZZ_SEED_WRITERS_H_

#include <string>
#include <string_view>
#include <vector>

namespace fot::fuzz {

// seed_files.cc: model files and tokenizers.
void WriteSafetensorsSeeds(const std::string& dir);
void WriteModelConfigSeeds(const std::string& dir);
void WriteNpySeeds(const std::string& dir);
void WriteTokenizerModelSeeds(const std::string& dir);
void WriteDocumentTokenizerSeeds(const std::string& dir);

// seed_memory.cc: memory stores, data directories of the earlier layout,
// storage records.
void WriteKvStoreSeeds(const std::string& dir);
void WriteMigrationSeeds(const std::string& dir);
void WriteSessionStoreSeeds(const std::string& dir);

// seed_service.cc: sequences of requests.
void WriteServiceSeeds(const std::string& dir);

// Shared by the writers.
void WriteSeed(const std::string& dir, const std::string& name, std::string_view bytes);
std::string ReadFileOrDie(const std::string& path);
// Every file under `root` as a WriteTree part (store_files.h), paths under
// `prefix`; stores' MANIFESTs with "*" sizes and checksums.
std::vector<std::string> TreeParts(const std::string& root, const std::string& prefix = "");

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_SEED_WRITERS_H_
