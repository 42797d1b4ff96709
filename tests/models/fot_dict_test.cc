// The project's own model (models/fot-dict) answers from memory: a fresh
// dictionary document (records KEY=VALUE; of 4 capitals and 4 digits, as
// tools/fot_data.py writes them) streams into a session, and "?KEY=" is asked
// for records that lie in memory, far outside the local window. With memory
// the value comes back; with the memory layers switched off it cannot.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/engine/session.h"
#include "tests/tools/dict_corpus_fixture.h"

namespace fot {
namespace {

class FotDictTest : public FotDictCorpusTest {
 protected:
  std::vector<int> Tokens(const std::string& text) { return corpus_->Tokens(text); }

  // Exact-match accuracy over queries for records of a fresh dictionary
  // (seeded, unseen in training) laid out so that no record straddles a window
  // boundary: a cut record cannot be answered from memory by any model.
  double Accuracy(const Engine& engine, const SessionOptions& options, int* asked) {
    const int window = engine.config().max_position_embeddings;
    std::vector<DictRecord> records;
    const std::vector<int> doc = corpus_->Dictionary(300, 20261123, &records, window);  // ~3.2k
    auto session = Session::Create(&engine, options);
    EXPECT_TRUE(session.ok()) << session.status();
    EXPECT_TRUE((*session)->StartDocument("dictionary").ok());
    EXPECT_TRUE((*session)->AppendToDocument("dictionary", doc).ok());
    const int64_t in_memory = (*session)->Progress().committed_tokens;
    int correct = 0;
    *asked = 0;
    for (size_t i = 0; i < records.size() && *asked < 40; i += 7) {
      const DictRecord& r = records[i];
      if (r.position + kDictRecordTokens > in_memory - window) continue;  // near the question
      QueryOptions query;
      query.max_tokens = 5;
      query.stop_at_eos = false;
      auto answer = (*session)->Generate(Tokens("?" + r.key + "="), query);
      EXPECT_TRUE(answer.ok()) << answer.status();
      ++*asked;
      if (answer.ok() && answer->tokens == Tokens(r.value + ";")) ++correct;
    }
    return *asked == 0 ? 0 : static_cast<double>(correct) / *asked;
  }
};

TEST_F(FotDictTest, AnswersFromMemoryWithDenseAndKnnRetrieval) {
  auto engine = Engine::Load(kFotDictModel);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (const char* mode : {"dense", "knn:64"}) {
    SessionOptions options;
    options.memory = (*engine)->DefaultMemoryOptions();
    options.retrieval = *ParseRetrieval(mode);
    int asked = 0;
    const double accuracy = Accuracy(**engine, options, &asked);
    std::printf("fot-dict, %s, ~3k tokens of memory: %.3f exact match over %d queries\n", mode,
                accuracy, asked);
    EXPECT_GE(asked, 30);
    EXPECT_GE(accuracy, 0.9) << mode;
  }
}

// Weights rounded to bf16 or quantized to int8 at load (the file is F32):
// still answers from memory (bench/weights_quality.cc and fot-dict-eval
// --weights_dtype measure the cost: none at 64k tokens).
TEST_F(FotDictTest, AnswersFromMemoryWithBf16AndInt8Weights) {
  for (const char* dtype : {"bf16", "int8", "int8:64"}) {
    auto engine = Engine::Load(kFotDictModel, *ParseWeightsOptions(dtype));
    ASSERT_TRUE(engine.ok()) << engine.status();
    SessionOptions options;
    options.memory = (*engine)->DefaultMemoryOptions();
    options.retrieval = *ParseRetrieval("dense");
    int asked = 0;
    const double accuracy = Accuracy(**engine, options, &asked);
    std::printf("fot-dict, %s weights, ~3k tokens of memory: %.3f exact match over %d queries\n",
                dtype, accuracy, asked);
    EXPECT_GE(asked, 30);
    EXPECT_GE(accuracy, 0.9) << dtype;
  }
}

TEST_F(FotDictTest, DefaultApproximateIndexAnswersWhatExactSearchAnswersAt32kTokens) {
  // DESIGN.md §3: an approximate index is judged on the model's own queries
  // and its answers, against exact search over the same memory.
  auto engine = Engine::Load(kFotDictModel);
  ASSERT_TRUE(engine.ok()) << engine.status();
  const int window = (*engine)->config().max_position_embeddings;
  SessionOptions options;
  options.memory = (*engine)->DefaultMemoryOptions();
  ASSERT_TRUE(ParseIndexSpec("ivf", &options.memory).ok());
  options.retrieval = *ParseRetrieval("knn:64");
  std::vector<DictRecord> records;
  const std::vector<int> doc = corpus_->Dictionary(3000, 20261202, &records, window);
  auto session = Session::Create(engine->get(), options);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->StartDocument("dictionary").ok());
  ASSERT_TRUE((*session)->AppendToDocument("dictionary", doc).ok());
  const int64_t in_memory = (*session)->Progress().committed_tokens;
  ASSERT_GE(in_memory, 30000);
  ASSERT_TRUE((*session)->Stats().layers.front().heads.front().entries > kIvfAutoTrainSize);
  int asked = 0, exact_correct = 0, ivf_correct = 0;
  for (size_t i = 0; i < records.size() && asked < 40; i += 71) {
    const DictRecord& r = records[i];
    if (r.position + kDictRecordTokens > in_memory - window) continue;
    QueryOptions query;
    query.max_tokens = 5;
    query.stop_at_eos = false;
    auto ivf = (*session)->Generate(Tokens("?" + r.key + "="), query);
    query.retrieval = *ParseRetrieval("knn:64:exact");
    auto exact = (*session)->Generate(Tokens("?" + r.key + "="), query);
    ASSERT_TRUE(ivf.ok() && exact.ok());
    EXPECT_EQ(ivf->tokens, exact->tokens) << "record " << i << " (" << r.key << ")";
    ++asked;
    exact_correct += exact->tokens == Tokens(r.value + ";");
    ivf_correct += ivf->tokens == Tokens(r.value + ";");
  }
  std::printf("fot-dict, %lld tokens of memory: ivf %d/%d, exact %d/%d\n",
              static_cast<long long>(in_memory), ivf_correct, asked, exact_correct, asked);
  EXPECT_GE(asked, 30);
  EXPECT_GE(exact_correct, 0.9 * asked);  // the model does answer: the comparison means something
}

TEST_F(FotDictTest, WithMemoryLayersOffItCannotAnswer) {
  auto config = ModelConfig::FromFile(kFotDictModel + "/config.json");
  ASSERT_TRUE(config.ok());
  config->mem_layers.clear();
  auto weights = ModelWeights::Load(kFotDictModel, *config);
  ASSERT_TRUE(weights.ok()) << weights.status();
  Engine no_memory(Transformer(*config, *std::move(weights)));
  SessionOptions options;
  options.memory = no_memory.DefaultMemoryOptions();
  int asked = 0;
  const double accuracy = Accuracy(no_memory, options, &asked);
  std::printf("fot-dict, memory off: %.3f exact match over %d queries\n", accuracy, asked);
  EXPECT_GE(asked, 30);
  EXPECT_LE(accuracy, 0.1);  // chance is 1e-4 for four digits
}

}  // namespace
}  // namespace fot
