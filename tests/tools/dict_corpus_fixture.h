// A fixture holding models/fot-dict's tokenizer and a DictCorpus over it,
// shared by the corpus's own tests and the model's accuracy tests.
#ifndef FOTSERVE_TESTS_TOOLS_DICT_CORPUS_FIXTURE_H_
#define FOTSERVE_TESTS_TOOLS_DICT_CORPUS_FIXTURE_H_

#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "src/tokenizer/tokenizer.h"
#include "tools/dict_corpus.h"

namespace fot {

inline const std::string kFotDictModel = std::string(FOT_SOURCE_DIR) + "/models/fot-dict";

class FotDictCorpusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = Tokenizer::Load(kFotDictModel + "/tokenizer.model");
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    auto corpus = DictCorpus::Create(tokenizer_.get());
    ASSERT_TRUE(corpus.ok()) << corpus.status();
    corpus_.emplace(*std::move(corpus));
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<DictCorpus> corpus_;  // fot_data.py's formats
};

}  // namespace fot

#endif  // FOTSERVE_TESTS_TOOLS_DICT_CORPUS_FIXTURE_H_
