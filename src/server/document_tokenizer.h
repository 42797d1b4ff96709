#ifndef FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_
#define FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

// Tokenizes a document that arrives in pieces exactly as Tokenizer::Encode
// would tokenize the whole text. SentencePiece never merges a piece across the
// start of a run of spaces (a piece holds "▁" only at its start), so text is
// cut there: the text before the last such boundary is tokenized, the rest is
// held back until more text (or the end) arrives. The first segment of a
// document is encoded as it is; later segments (each starting with a space)
// are encoded after a fixed anchor word whose tokens are then removed, so a
// tokenizer's dummy-prefix space is added only at the document's start.
class DocumentTokenizer {
 public:
  // `tokenizer` is not owned. `consumed` is the number of bytes of the
  // document already tokenized (0 for a new document; a resume offset, which
  // is always a boundary, otherwise).
  DocumentTokenizer(const Tokenizer* tokenizer, int64_t consumed);

  // Adds bytes; appends to *ids the tokens of the text that can no longer
  // change. With `end`, the held-back text is tokenized too. InvalidArgument
  // for invalid UTF-8 (before anything is consumed from this call's text).
  [[nodiscard]] absl::Status Feed(std::string_view text, bool end, std::vector<int>* ids);

  int64_t consumed() const { return consumed_; }       // bytes tokenized so far
  int64_t pending() const { return pending_.size(); }  // bytes held back

 private:
  absl::Status Encode(std::string_view segment, std::vector<int>* ids) const;

  const Tokenizer* tokenizer_;
  std::vector<int> anchor_ids_;
  int64_t consumed_;
  std::string pending_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_DOCUMENT_TOKENIZER_H_
