// fuzz-seeds OUT_DIR: writes the seed corpus of every harness of fuzz/ into
// OUT_DIR/<harness>/, made with the project's own writers, so that seeds are
// files the server really reads. fuzz/corpus/ holds its output (committed)
// beside the regression_* inputs of crashes found; after a format changed,
// tools/fuzz.sh --seeds writes it again.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_writers.h"

namespace fot::fuzz {
namespace {

void WriteCheckpointSeeds(const std::string& out) {
  WriteSafetensorsSeeds(out + "/safetensors");
  WriteModelConfigSeeds(out + "/model_config");
  WriteNpySeeds(out + "/npy");
}

void WriteTokenizerSeeds(const std::string& out) {
  WriteTokenizerModelSeeds(out + "/tokenizer");
  WriteDocumentTokenizerSeeds(out + "/document_tokenizer");
}

void WriteMemorySeeds(const std::string& out) {
  WriteKvStoreSeeds(out + "/kv_store");
  WriteMigrationSeeds(out + "/migration");
  WriteSessionStoreSeeds(out + "/session_store");
}

}  // namespace
}  // namespace fot::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (e.g. fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  fot::fuzz::WriteCheckpointSeeds(out);
  fot::fuzz::WriteTokenizerSeeds(out);
  fot::fuzz::WriteMemorySeeds(out);
  fot::fuzz::WriteServiceSeeds(out + "/service");
  std::printf("seeds written to %s\n", out.c_str());
  return 0;
}
