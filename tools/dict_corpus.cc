#include "tools/dict_corpus.h"

#include <algorithm>
#include <random>
#include <set>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fot {
namespace {

// The filler vocabulary of tools/fot_data.py.
constexpr const char* kNouns[] = {"grass", "sky",   "sun",  "moon", "river", "tree", "stone",
                                  "bird",  "house", "road", "hill", "cloud", "sea",  "field",
                                  "lamp",  "door",  "book", "cat",  "dog",   "apple"};
constexpr const char* kAdjectives[] = {"green", "blue",   "yellow", "red", "quiet", "warm",
                                       "cold",  "bright", "dark",   "old", "new",   "small",
                                       "big",   "soft",   "calm",   "wide"};
constexpr const char* kVerbs[] = {"sees", "finds", "likes", "follows", "passes", "meets"};
constexpr const char* kFixed[] = {"here we go.", "there and back again."};
constexpr const char kPassQuestion[] = "what is the pass key? the pass key is";

template <size_t N>
const char* Pick(const char* const (&words)[N], std::mt19937& rng) {
  return words[rng() % N];
}

// filler_sentence of fot_data.py.
std::string FillerSentence(std::mt19937& rng) {
  const unsigned r = rng() % 10;
  if (r == 0) return Pick(kFixed, rng);
  if (r < 6) {
    const char* noun = Pick(kNouns, rng);  // drawn in the order fot_data.py draws them
    return absl::StrCat("the ", noun, " is ", Pick(kAdjectives, rng), ".");
  }
  const char* adjective = Pick(kAdjectives, rng);
  const char* noun = Pick(kNouns, rng);
  const char* verb = Pick(kVerbs, rng);
  return absl::StrCat("a ", adjective, " ", noun, " ", verb, " the ", Pick(kNouns, rng), ".");
}

// Tokenizes filler one sentence at a time, as fot_data.py's Tok.filler does
// (every sentence starts a new word, so the concatenation equals encoding the
// joined text).
class Filler {
 public:
  explicit Filler(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}

  const std::vector<int>& Encode(const std::string& text) {
    auto it = cache_.find(text);
    if (it == cache_.end()) it = cache_.emplace(text, tokenizer_->Encode(text)).first;
    return it->second;
  }

  // Appends exactly n filler tokens (sentences until n, the last one cut).
  void Append(int64_t n, std::mt19937& rng, std::vector<int>* out) {
    std::vector<int> ids;
    while (static_cast<int64_t>(ids.size()) < n) {
      const std::vector<int>& sentence = Encode(FillerSentence(rng));
      ids.insert(ids.end(), sentence.begin(), sentence.end());
    }
    out->insert(out->end(), ids.begin(), ids.begin() + n);
  }

 private:
  const Tokenizer* tokenizer_;
  std::unordered_map<std::string, std::vector<int>> cache_;
};

}  // namespace

absl::StatusOr<DictCorpus> DictCorpus::Create(const Tokenizer* tokenizer) {
  if (tokenizer->bos_id() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer ", tokenizer->model_path(), " has no BOS token"));
  }
  DictCorpus corpus(tokenizer);
  corpus.symbol_ids_.fill(-1);
  std::array<int, 128> piece_ids;
  piece_ids.fill(-1);
  for (int id = 0; id < tokenizer->vocab_size(); ++id) {
    const std::string piece = tokenizer->PieceText(id);
    if (piece.size() == 1 && static_cast<unsigned char>(piece[0]) < 128) piece_ids[piece[0]] = id;
  }
  std::string symbols = "=;?";
  for (char c = 'A'; c <= 'Z'; ++c) symbols += c;
  for (char c = '0'; c <= '9'; ++c) symbols += c;
  for (char c : symbols) {
    if (piece_ids[c] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("the tokenizer ", tokenizer->model_path(),
                                                     " has no piece '", std::string(1, c),
                                                     "' (a record symbol of fot_data.py)"));
    }
    corpus.symbol_ids_[c] = piece_ids[c];
  }
  return corpus;
}

std::vector<int> DictCorpus::Tokens(std::string_view text) const {
  std::vector<int> ids;
  ids.reserve(text.size());
  for (char c : text) ids.push_back(symbol_ids_.at(static_cast<unsigned char>(c)));
  return ids;
}

namespace {

// Where a record of the layout starts when the document so far is `length`
// tokens long.
int64_t RecordStart(int64_t length, int window) {
  if (window > 0 && length / window != (length + kDictRecordTokens - 1) / window) {
    return (length / window + 1) * window;
  }
  return length;
}

}  // namespace

int64_t DictCorpus::RecordsToFill(int64_t min_tokens, int window) {
  int64_t records = 0, length = 1;  // BOS
  while (records == 0 || length < min_tokens) {
    length = RecordStart(length, window) + kDictRecordTokens;
    ++records;
  }
  return records;
}

std::vector<int> DictCorpus::Dictionary(int64_t records, uint32_t seed,
                                        std::vector<DictRecord>* out, int window) const {
  std::mt19937 rng(seed);
  std::mt19937 filler_rng(seed ^ 0x9e3779b9u);
  Filler filler(tokenizer_);
  std::set<std::string> used;
  std::vector<int> doc = {tokenizer_->bos_id()};
  doc.reserve(1 + records * kDictRecordTokens);
  for (int64_t made = 0; made < records;) {
    std::string key, value;
    for (int i = 0; i < 4; ++i) key += static_cast<char>('A' + rng() % 26);
    for (int i = 0; i < 4; ++i) value += static_cast<char>('0' + rng() % 10);
    if (!used.insert(key).second) continue;
    const int64_t start = RecordStart(static_cast<int64_t>(doc.size()), window);
    filler.Append(start - static_cast<int64_t>(doc.size()), filler_rng, &doc);
    out->push_back({key, value, start});
    const std::vector<int> ids = Tokens(key + "=" + value + ";");
    doc.insert(doc.end(), ids.begin(), ids.end());
    ++made;
  }
  return doc;
}

absl::StatusOr<PasskeyDocument> DictCorpus::Passkey(int64_t mem_tokens, int last_context,
                                                    double depth, uint32_t seed) const {
  if (!(depth >= 0 && depth <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("passkey depth ", depth, " is not in [0, 1]"));
  }
  std::mt19937 rng(seed);
  Filler filler(tokenizer_);
  PasskeyDocument doc;
  for (int i = 0; i < 5; ++i) doc.passkey += static_cast<char>('0' + rng() % 10);
  const std::vector<int> sentence = filler.Encode(absl::StrCat(
      "the pass key is ", doc.passkey, ". remember it. ", doc.passkey, " is the pass key."));
  doc.question = filler.Encode(kPassQuestion);
  // What follows the question: the tokens of " 48213." after it.
  const std::vector<int> full =
      tokenizer_->Encode(absl::StrCat(kPassQuestion, " ", doc.passkey, "."));
  if (full.size() <= doc.question.size() ||
      !std::equal(doc.question.begin(), doc.question.end(), full.begin())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer ", tokenizer_->model_path(),
                     " does not encode the passkey answer as a continuation of the question"));
  }
  doc.answer.assign(full.begin() + doc.question.size(), full.end());

  const int64_t sentence_tokens = static_cast<int64_t>(sentence.size());
  const int64_t length = mem_tokens + last_context - static_cast<int64_t>(doc.question.size());
  if (mem_tokens < sentence_tokens + 1 || length < 1 + sentence_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("a passkey document of ", mem_tokens,
                                                   " tokens of memory cannot hold the ",
                                                   sentence_tokens, "-token passkey sentence"));
  }
  const int64_t at = static_cast<int64_t>(depth * (mem_tokens - sentence_tokens - 1));
  doc.tokens.reserve(length);
  doc.tokens.push_back(tokenizer_->bos_id());
  filler.Append(at, rng, &doc.tokens);
  doc.position = static_cast<int64_t>(doc.tokens.size());
  doc.tokens.insert(doc.tokens.end(), sentence.begin(), sentence.end());
  filler.Append(length - static_cast<int64_t>(doc.tokens.size()), rng, &doc.tokens);
  return doc;
}

}  // namespace fot
