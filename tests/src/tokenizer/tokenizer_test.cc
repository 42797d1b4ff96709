#include "src/tokenizer/tokenizer.h"

#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/tokenizer_test_" + name;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A small corpus: English sentences plus a little accented Latin, Greek and
// CJK, so some non-ASCII characters get pieces and others need byte fallback.
std::string Corpus() {
  const std::vector<std::string> nouns = {"grass", "sky",  "river", "stone", "house", "cloud",
                                          "field", "lamp", "book",  "apple", "window"};
  const std::vector<std::string> adjs = {"green", "blue", "quiet", "warm", "old", "bright"};
  std::string corpus;
  for (int i = 0; i < 600; ++i) {
    corpus += "the " + nouns[i % nouns.size()] + " is " + adjs[(i * 7) % adjs.size()] + ", and a " +
              adjs[(i * 3) % adjs.size()] + " " + nouns[(i * 5) % nouns.size()] + " sees " +
              std::to_string(i * 37 % 1000) + " birds.\n";
    if (i % 10 == 0) corpus += "Café crème, naïve façade: ça coûte 5 €.\n";
    if (i % 15 == 0) corpus += "Καλημέρα κόσμε. 東京は大きい。\n";
  }
  return corpus;
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    corpus_path_ = new std::string(TempPath("corpus.txt"));
    model_path_ = new std::string(TempPath("tok.model"));
    WriteFile(*corpus_path_, Corpus());
    const absl::Status trained = TrainTokenizer(*corpus_path_, kVocabSize, *model_path_);
    ASSERT_TRUE(trained.ok()) << trained;
    auto tokenizer = Tokenizer::Load(*model_path_);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete corpus_path_;
    delete model_path_;
    tokenizer_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr) << "training failed"; }

  static std::string Stream(const std::vector<int>& ids,
                            std::vector<std::string>* parts = nullptr) {
    DetokenizeStream stream(tokenizer_);
    std::string out;
    for (int id : ids) {
      std::string part = stream.Feed(id);
      if (parts != nullptr) parts->push_back(part);
      out += part;
    }
    return out + stream.Flush();
  }

  static constexpr int kVocabSize = 400;
  static std::string* corpus_path_;
  static std::string* model_path_;
  static const Tokenizer* tokenizer_;
};

std::string* TokenizerTest::corpus_path_ = nullptr;
std::string* TokenizerTest::model_path_ = nullptr;
const Tokenizer* TokenizerTest::tokenizer_ = nullptr;

bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    const int len = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

const std::vector<std::string>& SampleTexts() {
  static const auto* texts = new std::vector<std::string>{
      "the grass is green",
      "Hello, World! 42 apples and 1000 birds.",
      "  two leading spaces, then   three inside, and trailing  ",
      "line one\nline two\n\ttabbed\r\n",
      "Café crème, naïve façade: ça coûte 5 €.",
      "Καλημέρα κόσμε",
      "東京は大きい。日本語のテキスト、見たことのない文字。",
      "emoji 😀🎉 and symbols ∑∫√ ≠ ≤",
      "mixed: the river 川 is blue 青 🌊!",
      "x",
  };
  return *texts;
}

TEST_F(TokenizerTest, VocabularyAndSpecialIds) {
  EXPECT_EQ(tokenizer_->vocab_size(), kVocabSize);
  EXPECT_EQ(tokenizer_->bos_id(), 1);
  EXPECT_EQ(tokenizer_->eos_id(), 2);
  EXPECT_EQ(tokenizer_->PieceText(0), "<unk>");
  EXPECT_EQ(tokenizer_->PieceText(1), "<s>");
  EXPECT_EQ(tokenizer_->PieceText(2), "</s>");
  EXPECT_EQ(tokenizer_->PieceText(3), "<0x00>");  // byte pieces follow the specials
  EXPECT_EQ(tokenizer_->PieceText(-1), "");
  EXPECT_EQ(tokenizer_->PieceText(kVocabSize), "");
  EXPECT_EQ(tokenizer_->model_path(), *model_path_);
}

TEST_F(TokenizerTest, RoundTripsAsciiAndUtf8) {
  for (const std::string& text : SampleTexts()) {
    SCOPED_TRACE(text);
    const std::vector<int> ids = tokenizer_->Encode(text);
    ASSERT_FALSE(ids.empty());
    for (int id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, kVocabSize);
      EXPECT_NE(id, 0) << "byte fallback should leave nothing unknown";
    }
    EXPECT_NE(ids.front(), tokenizer_->bos_id()) << "Encode adds no BOS";
    EXPECT_EQ(tokenizer_->Decode(ids), text);
  }
  EXPECT_TRUE(tokenizer_->Encode("").empty());
  EXPECT_EQ(tokenizer_->Decode({}), "");
}

TEST_F(TokenizerTest, CommonWordsAreSinglePiecesAndRareCharactersAreBytes) {
  const std::vector<int> common = tokenizer_->Encode("the grass is green");
  EXPECT_LE(common.size(), 6u);
  const std::vector<int> rare = tokenizer_->Encode("😀");
  ASSERT_EQ(rare.size(), 5u);  // "▁" plus the emoji's 4 bytes
  EXPECT_EQ(tokenizer_->PieceText(rare[1]), "<0xF0>");
}

TEST_F(TokenizerTest, DecodeSkipsSpecialAndOutOfRangeIds) {
  const std::vector<int> ids = tokenizer_->Encode("the sky is blue");
  std::vector<int> noisy = {tokenizer_->bos_id(), -7};
  noisy.insert(noisy.end(), ids.begin(), ids.end());
  noisy.push_back(kVocabSize + 5);
  noisy.push_back(tokenizer_->eos_id());
  EXPECT_EQ(tokenizer_->Decode(noisy), "the sky is blue");
}

TEST_F(TokenizerTest, InvalidUtf8InputDoesNotCrash) {
  const std::vector<int> ids =
      tokenizer_->Encode(std::string("ab\xff\xfe"
                                     "cd\xe2\x82",
                                     8));
  EXPECT_FALSE(ids.empty());
  const std::string text = tokenizer_->Decode(ids);
  EXPECT_TRUE(IsValidUtf8(text)) << text;
}

TEST_F(TokenizerTest, StreamConcatenationEqualsDecode) {
  for (const std::string& text : SampleTexts()) {
    SCOPED_TRACE(text);
    const std::vector<int> ids = tokenizer_->Encode(text);
    std::vector<std::string> parts;
    EXPECT_EQ(Stream(ids, &parts), tokenizer_->Decode(ids));
    // Every part is whole characters: nothing splits a UTF-8 sequence.
    for (const std::string& part : parts) EXPECT_TRUE(IsValidUtf8(part)) << part;
  }
}

TEST_F(TokenizerTest, StreamHoldsBackIncompleteCharacters) {
  const std::vector<int> ids = tokenizer_->Encode("a😀b");
  DetokenizeStream stream(tokenizer_);
  std::string out;
  for (int id : ids) {
    const std::string part = stream.Feed(id);
    if (tokenizer_->PieceText(id) == "<0xF0>" || tokenizer_->PieceText(id) == "<0x9F>" ||
        tokenizer_->PieceText(id) == "<0x98>") {
      EXPECT_EQ(part, "") << "incomplete emoji must be held back";
    }
    out += part;
  }
  EXPECT_EQ(out + stream.Flush(), "a😀b");

  // A sequence cut short is released by Flush, decoded as Decode would.
  const std::vector<int> emoji = tokenizer_->Encode("😀");
  const std::vector<int> cut(emoji.begin(), emoji.end() - 1);
  EXPECT_EQ(Stream(cut), tokenizer_->Decode(cut));
  EXPECT_NE(tokenizer_->Decode(cut).find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD
}

TEST_F(TokenizerTest, StreamRestartsAfterFlush) {
  DetokenizeStream stream(tokenizer_);
  std::string first;
  for (int id : tokenizer_->Encode("the lamp")) first += stream.Feed(id);
  first += stream.Flush();
  std::string second;
  for (int id : tokenizer_->Encode("the book")) second += stream.Feed(id);
  second += stream.Flush();
  EXPECT_EQ(first, "the lamp");
  EXPECT_EQ(second, "the book");  // its first piece's space dropped again
}

TEST_F(TokenizerTest, StreamMatchesDecodeOnRandomIdSequences) {
  // Arbitrary model output: text pieces, stray and partial byte sequences,
  // BOS/EOS/UNK, out-of-range ids, a lone word-boundary piece.
  std::vector<int> byte_ids, text_ids;
  for (int id = 0; id < kVocabSize; ++id) {
    const std::string piece = tokenizer_->PieceText(id);
    if (piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
      byte_ids.push_back(id);
    } else if (id > 2) {
      text_ids.push_back(id);
    }
  }
  ASSERT_EQ(byte_ids.size(), 256u);
  const std::vector<int> utf8_ids = tokenizer_->Encode("é€😀東");
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int> ids;
    const int length = static_cast<int>(rng() % 40);
    for (int i = 0; i < length; ++i) {
      const int r = static_cast<int>(rng() % 100);
      if (r < 40) {
        ids.push_back(text_ids[rng() % text_ids.size()]);
      } else if (r < 60) {
        ids.push_back(byte_ids[rng() % 256]);
      } else if (r < 70) {
        ids.push_back(byte_ids[0x80 + rng() % 0x80]);  // high bytes: leads and continuations
      } else if (r < 85) {
        ids.push_back(utf8_ids[rng() % utf8_ids.size()]);
      } else if (r < 93) {
        ids.push_back(static_cast<int>(rng() % 3));  // unk, bos, eos
      } else if (r < 96) {
        ids.push_back(tokenizer_->Encode(" ").front());
      } else {
        ids.push_back(rng() % 2 ? -1 : kVocabSize);
      }
    }
    ASSERT_EQ(Stream(ids), tokenizer_->Decode(ids)) << "trial " << trial;
  }
}

TEST_F(TokenizerTest, LongStreamMatchesDecode) {
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += (i % 3 == 0)   ? "日本語のテキスト、"
            : (i % 3 == 1) ? "the old house 🏠 "
                           : "ça coûte €5. ";
  }
  const std::vector<int> ids = tokenizer_->Encode(text);
  ASSERT_GT(ids.size(), 1000u);
  EXPECT_EQ(Stream(ids), text);
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  const std::string again = TempPath("tok_again.model");
  const absl::Status trained = TrainTokenizer(*corpus_path_, kVocabSize, again);
  ASSERT_TRUE(trained.ok()) << trained;
  EXPECT_EQ(ReadFile(again), ReadFile(*model_path_));
}

TEST_F(TokenizerTest, LoadErrorsNameTheFile) {
  const std::string missing = TempPath("missing.model");
  auto result = Tokenizer::Load(missing);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(result.status().message().find(missing), std::string::npos) << result.status();

  const std::string model = ReadFile(*model_path_);
  std::mt19937 rng(7);
  std::string random_bytes(4096, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"empty.model", ""},
      {"garbage.model", "this is not a sentencepiece model, just some text\n"},
      {"random.model", random_bytes},
      {"truncated.model", model.substr(0, model.size() / 2)},
  };
  for (const auto& [name, contents] : bad) {
    SCOPED_TRACE(name);
    const std::string path = TempPath(name);
    WriteFile(path, contents);
    auto loaded = Tokenizer::Load(path);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << loaded.status();
    EXPECT_NE(loaded.status().message().find(path), std::string::npos) << loaded.status();
  }

  // A directory is not a model either.
  auto dir = Tokenizer::Load(::testing::TempDir());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument) << dir.status();
  EXPECT_NE(dir.status().message().find("directory"), std::string::npos) << dir.status();
}

// A model whose second piece starts with a NUL byte: SentencePiece's trie of
// the pieces threw on it, which aborted the process (found by
// fuzz/tokenizer; fuzz/corpus/tokenizer/regression_nul_piece).
TEST_F(TokenizerTest, APieceThatCannotBeIndexedIsInvalidArgument) {
  const std::string model(
      "\x0a\x0e\x0a\x05<unk>\x15\x00\x00\x00\x00\x18\x02"
      "\x0a\x0c\x0a\x03\x00<\xd0\x15\x00\x00\x00\x00\x18\x0b",
      30);
  const std::string path = TempPath("nul_piece.model");
  WriteFile(path, model);
  auto loaded = Tokenizer::Load(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << loaded.status();
  EXPECT_NE(loaded.status().message().find(path), std::string::npos) << loaded.status();
}

TEST_F(TokenizerTest, TrainingErrors) {
  const std::string out = TempPath("never_written.model");
  const std::string missing = TempPath("no_corpus.txt");
  absl::Status status = TrainTokenizer(missing, 300, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find(missing), std::string::npos) << status;

  status = TrainTokenizer(*corpus_path_, 0, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("vocab_size"), std::string::npos) << status;

  // Too small to hold the 256 byte pieces and the specials.
  status = TrainTokenizer(*corpus_path_, 100, out);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(*corpus_path_), std::string::npos) << status;

  const std::string empty_corpus = TempPath("empty_corpus.txt");
  WriteFile(empty_corpus, "");
  status = TrainTokenizer(empty_corpus, 300, out);
  EXPECT_FALSE(status.ok());

  const std::string unwritable = TempPath("no_such_dir/tok.model");
  status = TrainTokenizer(*corpus_path_, kVocabSize, unwritable);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find(unwritable), std::string::npos) << status;

  std::ifstream never(out);
  EXPECT_FALSE(never.good()) << "a failed training must not leave a model file";
}

TEST_F(TokenizerTest, AFailingDiskKeepsThePreviousModelFile) {
  const std::string path = TempPath("failing_disk.model");
  ASSERT_TRUE(WriteFileAtomically(*Env::Default(), path, "previous").ok());
  const std::string trained = ReadFile(*model_path_);
  ForEachFailurePoint(
      [&](Env& env) { return TrainTokenizer(*corpus_path_, kVocabSize, path, &env); },
      [&](const absl::Status& status, int fail_at) {
        const std::string now = ReadFile(path);
        if (status.ok()) {
          EXPECT_EQ(now, trained);
          return;
        }
        EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
        EXPECT_TRUE(now == "previous" || now == trained) << "failing at " << fail_at;
        ASSERT_TRUE(WriteFileAtomically(*Env::Default(), path, "previous").ok());
      });
}

}  // namespace
}  // namespace fot
