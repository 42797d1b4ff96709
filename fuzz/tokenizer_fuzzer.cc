// Fuzzes loading a tokenizer model (src/tokenizer/tokenizer.h): the
// tokenizer.model of a model folder, parsed by SentencePiece behind our
// backend, then used.
//
// Input: the model file's bytes; optionally a second part, a text to encode
// besides the fixed ones.
//
// Checks: a model that loads has a vocabulary, encodes into it, answers ""
// for pieces outside it, and streams any ids (its encodings, every piece,
// ids outside the vocabulary) through DetokenizeStream to exactly Decode's
// text, as tokenizer.h promises.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "src/tokenizer/tokenizer.h"

namespace fot::fuzz {
namespace {

const char* const kTexts[] = {"the river sees birds", "Café crème, ça coûte 5 €.",
                              "  two  spaces\nand a line", "東京 😀 \xE2\x96\x81 <s> <0x41>"};

void CheckStream(const Tokenizer& tokenizer, const std::vector<int>& ids) {
  DetokenizeStream stream(&tokenizer);
  std::string streamed;
  for (int id : ids) streamed += stream.Feed(id);
  streamed += stream.Flush();
  FOT_FUZZ_CHECK(streamed == tokenizer.Decode(ids), "DetokenizeStream differs from Decode");
}

void CheckEncode(const Tokenizer& tokenizer, std::string_view text, std::vector<int>* all) {
  const std::vector<int> ids = tokenizer.Encode(text);
  for (int id : ids) {
    FOT_FUZZ_CHECK(id >= 0 && id < tokenizer.vocab_size(),
                   "Encode returned an id outside the vocabulary");
  }
  CheckStream(tokenizer, ids);
  all->insert(all->end(), ids.begin(), ids.end());
}

void CheckTokenizer(const Tokenizer& tokenizer, std::string_view extra_text) {
  const int vocab = tokenizer.vocab_size();
  FOT_FUZZ_CHECK(vocab > 0, "a loaded tokenizer has no vocabulary");
  FOT_FUZZ_CHECK(tokenizer.PieceText(-1).empty() && tokenizer.PieceText(vocab).empty(),
                 "PieceText outside the vocabulary is not empty");
  std::vector<int> all;
  for (const char* text : kTexts) CheckEncode(tokenizer, text, &all);
  CheckEncode(tokenizer, extra_text, &all);
  // Every piece once (the first 512), with ids outside the vocabulary mixed in.
  for (int id = 0; id < vocab && id < 512; ++id) {
    tokenizer.PieceText(id);
    all.push_back(id);
    if (id % 7 == 0) all.push_back(id % 2 == 0 ? -1 : vocab);
  }
  CheckStream(tokenizer, all);
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot;
  const std::vector<std::string_view> parts = fuzz::SplitParts(fuzz::AsText(data, size));
  const std::string path = fuzz::FreshDir("tokenizer") + "/tokenizer.model";
  fuzz::WriteFileOrDie(path, parts[0]);
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::Load(path);
  if (!tokenizer.ok()) return 0;
  fuzz::CheckTokenizer(**tokenizer, parts.size() > 1 ? parts[1] : "");
  return 0;
}
