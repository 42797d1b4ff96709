#ifndef FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_
#define FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

// Tokenizes a document that arrives in pieces into the same tokens however it
// is cut into chunks and wherever an ingest resumes. SentencePiece never
// merges a piece across the start of a run of spaces (a piece holds "▁" only
// at its start), so the text is cut into segments there, and each segment is
// encoded on its own: the first of a document as it is, later ones (each
// starting with a space) after a fixed anchor word whose tokens are then
// removed, so a tokenizer's dummy-prefix space is added only at the
// document's start. Text after the last boundary is held back until more
// text (or the end) arrives.
//
// That is Tokenizer::Encode of the whole text, except where a segment has
// segmentations of equal score ("ee" "e" and "e" "ee"): Encode picks one by
// the rounding of the scores summed before it, which depends on all the text
// before; a segment encoded alone always gets the same (found by
// fuzz/document_tokenizer).
class DocumentTokenizer {
 public:
  // `tokenizer` is not owned. `consumed` is the number of bytes of the
  // document already tokenized (0 for a new document; a resume offset, which
  // is always a boundary, otherwise).
  DocumentTokenizer(const Tokenizer* tokenizer, int64_t consumed);

  // Adds bytes; appends to *ids the tokens of the text that can no longer
  // change. With `end`, the held-back text is tokenized too. InvalidArgument
  // for invalid UTF-8 (before anything is consumed from this call's text).
  // Costs time linear in `text` and in what it lets be encoded, not in the
  // text held back: a client may send a long run without a space in tiny
  // chunks.
  [[nodiscard]] absl::Status Feed(std::string_view text, bool end, std::vector<int>* ids);

  int64_t consumed() const { return consumed_; }       // bytes tokenized so far
  int64_t pending() const { return pending_.size(); }  // bytes held back

 private:
  // Appends the tokens of `segment`, which starts at document byte `at`.
  absl::Status Encode(std::string_view segment, int64_t at, std::vector<int>* ids) const;
  // Checks the UTF-8 of pending_ past valid_ (all of it with `end`, else up
  // to a character cut at its end) and advances valid_.
  [[nodiscard]] absl::Status ValidateNewText(bool end);
  // Looks for boundaries in pending_ past scanned_ and advances it.
  void FindNewBoundaries();

  const Tokenizer* tokenizer_;
  std::vector<int> anchor_ids_;
  int64_t consumed_;
  std::string pending_;
  // What earlier Feeds learnt of pending_, so that each byte is looked at
  // once: checking all of pending_ on every chunk made a run without a space
  // quadratic in its chunks (256 kB in 1-byte chunks: minutes).
  size_t valid_ = 0;          // pending_[0, valid_) is whole, valid characters
  size_t scanned_ = 0;        // the boundaries before pending_[scanned_] are known
  size_t last_boundary_ = 0;  // the last of them; 0 if none
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_
