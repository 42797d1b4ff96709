// Fuzzes DocumentTokenizer (src/server/document_tokenizer.h), which
// tokenizes a document that an Ingest stream delivers in chunks.
//
// Input: the document's chunks, as parts (fuzz_support.h), each fed in turn,
// the last with end = true.
//
// Checks, with the service tests' trained tokenizer and models/fot-dict's:
// chunked tokenization succeeds exactly when the whole text is valid UTF-8,
// and then gives the tokens of the whole text fed at once; and resuming at
// any offset it reported as consumed (a cut Ingest resumed at its
// resume_offset) gives the same tokens from there on. (Not Encode(whole
// text): document_tokenizer.h says where they differ.)
#include <cstdint>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "src/server/document_tokenizer.h"

namespace fot::fuzz {
namespace {

// Where a chunked run stood after one of its chunks.
struct Cut {
  int64_t consumed;
  size_t ids;  // tokens emitted so far
};

// Feeds every chunk; false at the first that fails.
bool FeedChunks(const Tokenizer& tokenizer, const std::vector<std::string_view>& chunks,
                std::vector<int>* ids, std::vector<Cut>* cuts) {
  DocumentTokenizer document(&tokenizer, 0);
  for (size_t i = 0; i < chunks.size(); ++i) {
    const absl::Status fed = document.Feed(chunks[i], i + 1 == chunks.size(), ids);
    if (!fed.ok()) {
      FOT_FUZZ_CHECK(fed.code() == absl::StatusCode::kInvalidArgument,
                     "chunked tokenization failed: " + fed.ToString());
      return false;
    }
    cuts->push_back({document.consumed(), ids->size()});
  }
  FOT_FUZZ_CHECK(document.pending() == 0, "text left pending after the end");
  return true;
}

// Each resume tokenizes the rest of the text, so checking one at every cut
// cost the number of cuts times the text: up to 2.4 s an input under ASan
// (4 kB in 146 chunks), and the fuzzer slowed as its inputs grew. This
// many keep an input's cost linear in its length.
constexpr size_t kMaxResumes = 16;

// The cuts to resume at: those past byte 0 that consumed something (a
// chunk that consumed nothing repeats the cut before it), or kMaxResumes of
// them, the first and the last among them.
std::vector<Cut> ResumePoints(const std::vector<Cut>& cuts) {
  std::vector<Cut> distinct;
  for (const Cut& cut : cuts) {
    if (cut.consumed == 0 || (!distinct.empty() && distinct.back().consumed == cut.consumed)) {
      continue;
    }
    distinct.push_back(cut);
  }
  if (distinct.size() <= kMaxResumes) return distinct;
  std::vector<Cut> spread;
  for (size_t i = 0; i < kMaxResumes; ++i) {
    spread.push_back(distinct[i * (distinct.size() - 1) / (kMaxResumes - 1)]);
  }
  return spread;
}

// A resumed ingest: a fresh DocumentTokenizer at `cut`, given the rest.
void CheckResume(const Tokenizer& tokenizer, std::string_view whole, const std::vector<int>& ids,
                 const Cut& cut) {
  if (cut.consumed == 0) return;
  FOT_FUZZ_CHECK(cut.consumed <= static_cast<int64_t>(whole.size()), "consumed beyond the text");
  DocumentTokenizer resumed(&tokenizer, cut.consumed);
  std::vector<int> rest;
  const absl::Status fed = resumed.Feed(whole.substr(cut.consumed), true, &rest);
  FOT_FUZZ_CHECK(fed.ok(), "resuming at a consumed offset failed: " + fed.ToString());
  const std::vector<int> expected(ids.begin() + cut.ids, ids.end());
  FOT_FUZZ_CHECK(rest == expected, "resuming at offset " + std::to_string(cut.consumed) +
                                       " gives other tokens than the uncut ingest");
}

void CheckTokenizer(const Tokenizer& tokenizer, const std::vector<std::string_view>& chunks,
                    std::string_view whole) {
  std::vector<int> ids;
  std::vector<Cut> cuts;
  const bool fed = FeedChunks(tokenizer, chunks, &ids, &cuts);
  const bool valid = ValidateUtf8(whole, /*allow_incomplete_end=*/false).ok();
  FOT_FUZZ_CHECK(fed == valid, valid ? "valid UTF-8 refused" : "invalid UTF-8 accepted");
  if (!fed) return;
  std::vector<int> at_once;
  std::vector<Cut> unused;
  FOT_FUZZ_CHECK(FeedChunks(tokenizer, {whole}, &at_once, &unused),
                 "the whole text is refused, its chunks were not");
  FOT_FUZZ_CHECK(ids == at_once, "chunked tokens differ from the whole text's");
  for (const Cut& cut : ResumePoints(cuts)) CheckResume(tokenizer, whole, ids, cut);
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot::fuzz;
  const std::vector<std::string_view> chunks = SplitParts(AsText(data, size));
  std::string whole;
  for (std::string_view chunk : chunks) whole += chunk;
  CheckTokenizer(TrainedTokenizer(), chunks, whole);
  CheckTokenizer(FotDictTokenizer(), chunks, whole);
  return 0;
}
