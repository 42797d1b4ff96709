// DocumentTokenizer (src/server/document_tokenizer.h) on models/fot-dict's
// tokenizer, the one the demo server runs. Its pieces "e" and "ee" score
// "ee" "e" and "e" "ee" alike, so Tokenizer::Encode of "... eee" picks one by
// the rounding of the scores before it: fuzz/document_tokenizer found a
// document whose resumed ingest gave other tokens than the uncut one, and
// two chunkings of "B eee" that disagreed. (ManagerTest in
// session_manager_test.cc covers chunk cuts inside characters and runs of
// spaces.) Feed once checked all the text held back on every chunk, so a
// run without a space sent in tiny chunks cost time quadratic in its length.
#include "src/server/document_tokenizer.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/server/session_manager.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {
namespace {

class DocumentTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto loaded = Tokenizer::Load(std::string(FOT_SOURCE_DIR) + "/models/fot-dict/tokenizer.model");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = loaded->release();
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  // The tokens of `chunks` fed in turn into a document resumed at `consumed`.
  static std::vector<int> Feed(const std::vector<std::string>& chunks, int64_t consumed = 0,
                               std::vector<int64_t>* cuts = nullptr) {
    DocumentTokenizer document(tokenizer_, consumed);
    std::vector<int> ids;
    for (size_t i = 0; i < chunks.size(); ++i) {
      const absl::Status fed = document.Feed(chunks[i], i + 1 == chunks.size(), &ids);
      EXPECT_TRUE(fed.ok()) << fed;
      if (cuts != nullptr) cuts->push_back(document.consumed());
    }
    return ids;
  }

  static Tokenizer* tokenizer_;
};

Tokenizer* DocumentTokenizerTest::tokenizer_ = nullptr;

// The chunks of fuzz/corpus/document_tokenizer/resume_tie, the input the
// fuzzer found.
const std::vector<std::string> kFoundChunks = {
    "  stone  and apple and \xE6\x9D\xB1", "\xE4\xBA\xAC window,   the",
    " " + std::string(53, 'e') + "\xF0\x9F\x98", "\x80zagain"};

TEST_F(DocumentTokenizerTest, EqualScoringSegmentationsDoNotDependOnTheChunking) {
  const std::vector<int> whole = Feed({"B eee"});
  EXPECT_EQ(Feed({"B e", "ee"}), whole);
  EXPECT_EQ(Feed({"B ", "eee"}), whole);
  EXPECT_EQ(Feed({"B", " eee"}), whole);
}

TEST_F(DocumentTokenizerTest, AResumedDocumentGetsTheTokensOfTheUncutOne) {
  std::string text;
  for (const std::string& chunk : kFoundChunks) text += chunk;
  std::vector<int64_t> cuts;
  const std::vector<int> uncut = Feed(kFoundChunks, 0, &cuts);
  EXPECT_EQ(Feed({text}), uncut);
  for (int64_t cut : cuts) {
    SCOPED_TRACE("resumed at byte " + std::to_string(cut));
    // The tokens up to the cut (a boundary), then the rest in a new stream.
    std::vector<int> resumed = Feed({text.substr(0, cut)});
    const std::vector<int> rest = Feed({text.substr(cut)}, cut);
    resumed.insert(resumed.end(), rest.begin(), rest.end());
    EXPECT_EQ(resumed, uncut);
  }
}

TEST_F(DocumentTokenizerTest, TextWithoutSuchTiesTokenizesAsEncodeOfTheWholeText) {
  for (const std::string text : {"the river sees birds", "  two  spaces,\nlines\tand tabs ",
                                 "Caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC"}) {
    EXPECT_EQ(Feed({text.substr(0, 7), text.substr(7)}), tokenizer_->Encode(text)) << text;
  }
}

// As much text without a space as the server holds back (SessionManager's
// default), one byte per chunk, so that chunks also end inside characters.
// When Feed checked all the held-back text on every chunk, a quarter of this
// took 150 to 190 s (Release), and the time grows with the square: this one
// ran for 40 minutes or so; now it takes under a second.
TEST_F(DocumentTokenizerTest, ARunWithoutASpaceInOneByteChunksTokenizesAsAtOnce) {
  const size_t size = SessionManagerOptions().max_pending_text_bytes;
  std::string text;
  while (text.size() + 7 <= size) text += "ab\xC3\xA9\xE6\x9D\xB1";
  text.resize(size, 'c');
  text += " tail";
  DocumentTokenizer document(tokenizer_, 0);
  std::vector<int> ids;
  for (size_t i = 0; i < text.size(); ++i) {
    ASSERT_TRUE(document.Feed(text.substr(i, 1), false, &ids).ok()) << "at byte " << i;
  }
  EXPECT_EQ(document.consumed(), static_cast<int64_t>(text.size() - 5));
  ASSERT_TRUE(document.Feed("", true, &ids).ok());
  EXPECT_EQ(ids, Feed({text}));
}

// The byte named is counted in all the text held back, not only in the
// chunk that brought it, and not from where an earlier Feed stopped checking.
TEST_F(DocumentTokenizerTest, InvalidUtf8IsNamedInTheTextHeldBack) {
  DocumentTokenizer document(tokenizer_, 0);
  std::vector<int> ids;
  ASSERT_TRUE(document.Feed("one tw", false, &ids).ok());
  ASSERT_TRUE(document.Feed("o\xC3", false, &ids).ok());
  const absl::Status fed = document.Feed("(", false, &ids);
  EXPECT_EQ(fed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fed.message(),
            "document text is not valid UTF-8 (invalid UTF-8 at byte 5 of the text not yet "
            "tokenized, which starts at document byte 3)");
  // The refused chunk is not held back: the character can still be completed.
  EXPECT_TRUE(document.Feed("\xA9", true, &ids).ok());
  EXPECT_EQ(ids, Feed({"one two\xC3\xA9"}));
}

}  // namespace
}  // namespace fot
