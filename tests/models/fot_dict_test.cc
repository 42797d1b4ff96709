// The project's own model (models/fot-dict) answers from memory: a fresh
// dictionary document (records KEY=VALUE; of 4 capitals and 4 digits, as
// tools/fot_data.py writes them) streams into a session, and "?KEY=" is asked
// for records that lie in memory, far outside the local window. With memory
// the value comes back; with the memory layers switched off it cannot.
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/session.h"
#include "src/tokenizer.h"

namespace fot {
namespace {

const std::string kModel = std::string(FOT_SOURCE_DIR) + "/models/fot-dict";

struct Record {
  std::string key, value;
  int64_t position;  // of its first token in the document
};

class FotDictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = Tokenizer::Load(kModel + "/tokenizer.model");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    for (int id = 0; id < tokenizer_->vocab_size(); ++id) piece_ids_[tokenizer_->PieceText(id)] = id;
    for (const char* symbol : {"=", ";", "?", "A", "Z", "0", "9"}) {
      ASSERT_TRUE(piece_ids_.count(symbol)) << "the tokenizer has no piece '" << symbol << "'";
    }
  }

  std::vector<int> Tokens(const std::string& text) {
    std::vector<int> ids;
    for (char c : text) ids.push_back(piece_ids_.at(std::string(1, c)));
    return ids;
  }

  // A fresh dictionary of `records` records (seeded, unseen in training).
  std::vector<int> Dictionary(int records, uint32_t seed, std::vector<Record>* out) {
    std::mt19937 rng(seed);
    std::set<std::string> used;
    std::vector<int> doc = {tokenizer_->bos_id()};
    while (static_cast<int>(out->size()) < records) {
      std::string key, value;
      for (int i = 0; i < 4; ++i) key += static_cast<char>('A' + rng() % 26);
      for (int i = 0; i < 4; ++i) value += static_cast<char>('0' + rng() % 10);
      if (!used.insert(key).second) continue;
      out->push_back({key, value, static_cast<int64_t>(doc.size())});
      const std::vector<int> ids = Tokens(key + "=" + value + ";");
      doc.insert(doc.end(), ids.begin(), ids.end());
    }
    return doc;
  }

  // Exact-match accuracy over queries for records wholly inside one memory
  // window (a record cut by a window boundary cannot be answered from memory).
  double Accuracy(const Engine& engine, const SessionOptions& options, int* asked) {
    std::vector<Record> records;
    const std::vector<int> doc = Dictionary(320, 20261123, &records);  // ~3.2k tokens
    auto session = Session::Create(&engine, options);
    EXPECT_TRUE(session.ok()) << session.status();
    EXPECT_TRUE((*session)->StartDocument("dictionary").ok());
    EXPECT_TRUE((*session)->AppendToDocument("dictionary", doc).ok());
    const int64_t window = engine.config().max_position_embeddings;
    const int64_t in_memory = (*session)->Progress().committed_tokens;
    int correct = 0;
    *asked = 0;
    for (size_t i = 0; i < records.size() && *asked < 40; i += 7) {
      const Record& r = records[i];
      if (r.position + 10 > in_memory - window || r.position / window != (r.position + 9) / window) {
        continue;  // near the local window, or cut by a window boundary
      }
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

  std::unique_ptr<Tokenizer> tokenizer_;
  std::map<std::string, int> piece_ids_;
};

TEST_F(FotDictTest, AnswersFromMemoryWithDenseAndKnnRetrieval) {
  auto engine = Engine::Load(kModel);
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

TEST_F(FotDictTest, WithMemoryLayersOffItCannotAnswer) {
  auto config = ModelConfig::FromFile(kModel + "/config.json");
  ASSERT_TRUE(config.ok());
  config->mem_layers.clear();
  auto weights = ModelWeights::Load(kModel, *config);
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
