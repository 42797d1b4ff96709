// The dictionary documents of tools/dict_corpus.h: the window-aligned layout
// keeps every record inside one window and holds the same records as the
// stream layout of the same seed.
#include "tools/dict_corpus.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/tools/dict_corpus_fixture.h"

namespace fot {
namespace {

using DictCorpusTest = FotDictCorpusTest;

TEST_F(DictCorpusTest, StreamLayoutWritesRecordsBackToBack) {
  std::vector<DictRecord> records;
  const std::vector<int> doc = corpus_->Dictionary(50, 7, &records);
  ASSERT_EQ(records.size(), 50u);
  EXPECT_EQ(doc.size(), 1u + 50 * kDictRecordTokens);
  EXPECT_EQ(doc.front(), tokenizer_->bos_id());
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].position, 1 + static_cast<int64_t>(i) * kDictRecordTokens);
    const std::vector<int> expected =
        corpus_->Tokens(records[i].key + "=" + records[i].value + ";");
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), doc.begin() + records[i].position));
  }
}

TEST_F(DictCorpusTest, AlignedLayoutKeepsEveryRecordInsideOneWindow) {
  const int window = 128;
  std::vector<DictRecord> stream, aligned;
  corpus_->Dictionary(300, 11, &stream);
  const std::vector<int> doc = corpus_->Dictionary(300, 11, &aligned, window);
  ASSERT_EQ(aligned.size(), stream.size());
  int gaps = 0;
  for (size_t i = 0; i < aligned.size(); ++i) {
    const DictRecord& r = aligned[i];
    EXPECT_EQ(r.key, stream[i].key);
    EXPECT_EQ(r.value, stream[i].value);
    EXPECT_EQ(r.position / window, (r.position + kDictRecordTokens - 1) / window) << i;
    const std::vector<int> expected = corpus_->Tokens(r.key + "=" + r.value + ";");
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), doc.begin() + r.position));
    const int64_t previous_end = i == 0 ? 1 : aligned[i - 1].position + kDictRecordTokens;
    if (r.position != previous_end) {
      // Only a record that would have straddled a boundary moves, to that boundary.
      EXPECT_EQ(r.position % window, 0) << i;
      EXPECT_NE(previous_end / window, (previous_end + kDictRecordTokens - 1) / window) << i;
      ++gaps;
      const std::string gap = tokenizer_->Decode(
          std::vector<int>(doc.begin() + previous_end, doc.begin() + r.position));
      EXPECT_EQ(gap.find_first_of("=;?"), std::string::npos) << "filler, not records: " << gap;
    }
  }
  EXPECT_GT(gaps, 20);  // 3000 record tokens span ~25 windows
  EXPECT_EQ(doc.size(), static_cast<size_t>(aligned.back().position + kDictRecordTokens));
}

TEST_F(DictCorpusTest, RecordsToFillIsTheFewestRecordsReachingTheLength) {
  for (int window : {0, 128}) {
    for (int64_t min_tokens : {0, 1, 11, 12, 128, 129, 4096 + 63, 65536 + 63}) {
      const int64_t r = DictCorpus::RecordsToFill(min_tokens, window);
      std::vector<DictRecord> records;
      EXPECT_GE(static_cast<int64_t>(corpus_->Dictionary(r, 3, &records, window).size()),
                min_tokens);
      if (r > 1) {
        records.clear();
        EXPECT_LT(static_cast<int64_t>(corpus_->Dictionary(r - 1, 3, &records, window).size()),
                  min_tokens)
            << "window " << window << ", min_tokens " << min_tokens;
      }
    }
  }
}

}  // namespace
}  // namespace fot
