// The model and tokenizers the engine-level harnesses of fuzz/ run on, made
// once per process in the scratch directory (fuzz_support.h).
#ifndef FOTSERVE_FUZZ_FUZZ_MODELS_H_
#define FOTSERVE_FUZZ_FUZZ_MODELS_H_

#include <string>

#include "src/checkpoint/model_config.h"
#include "src/engine/engine.h"
#include "src/tokenizer/tokenizer.h"

namespace fot::fuzz {

// The small LongLLaMA of the engine-level harnesses: vocab 400 (the trained
// tokenizer's), hidden 32, 3 layers, 4 heads (2 kv), W 16, L 8, memory layers
// 1 and 2: service_test_fixture.h's model, with random weights.
ModelConfig SmallConfig();
// Writes SmallConfig() with seeded random weights into a folder of the
// scratch directory once, and loads it.
const std::string& SmallModelDir();
const Engine& SmallEngine();

// service_test_fixture.h's tokenizer corpus.
std::string TokenizerCorpus();
// The tokenizer the service tests train (400 pieces, byte fallback, on
// service_test_fixture.h's corpus), trained once per process.
const Tokenizer& TrainedTokenizer();
// models/fot-dict's tokenizer, the one the demo server runs.
const Tokenizer& FotDictTokenizer();

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_FUZZ_MODELS_H_
