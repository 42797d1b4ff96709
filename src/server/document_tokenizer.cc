#include "src/server/document_tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/utf8.h"

namespace fot {
namespace {

// The word encoded before a later segment of a document; its own tokens are
// then dropped (see DocumentTokenizer).
constexpr char kAnchor[] = "a";
// U+2581, the character SentencePiece writes for a space; input text holding
// it is split at it as at a space.
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";

bool EndsWithSpace(std::string_view text) {
  return !text.empty() && (text.back() == ' ' || text.ends_with(kSpaceSymbol));
}

// Whether a segment starts at byte c of `text` (which starts at one): at the
// start of a run of spaces.
bool IsBoundary(std::string_view text, size_t c) {
  return c > 0 && text[c] == ' ' && !EndsWithSpace(text.substr(0, c));
}

// The first boundary of `text` after byte `from`; text.size() if none.
size_t NextBoundary(std::string_view text, size_t from) {
  size_t c = from + 1;
  while (c < text.size() && !IsBoundary(text, c)) ++c;
  return std::min(c, text.size());
}

}  // namespace

DocumentTokenizer::DocumentTokenizer(const Tokenizer* tokenizer, int64_t consumed)
    : tokenizer_(tokenizer), anchor_ids_(tokenizer->Encode(kAnchor)), consumed_(consumed) {}

absl::Status DocumentTokenizer::Encode(std::string_view segment, int64_t at,
                                       std::vector<int>* ids) const {
  if (segment.empty()) return absl::OkStatus();
  if (at == 0) {
    const std::vector<int> encoded = tokenizer_->Encode(segment);
    ids->insert(ids->end(), encoded.begin(), encoded.end());
    return absl::OkStatus();
  }
  // A later segment starts with a space: encode it after the anchor word, so
  // that no dummy-prefix space is added, and drop the anchor's tokens.
  std::string text = kAnchor;
  text.append(segment);
  const std::vector<int> encoded = tokenizer_->Encode(text);
  if (encoded.size() < anchor_ids_.size() ||
      !std::equal(anchor_ids_.begin(), anchor_ids_.end(), encoded.begin())) {
    return absl::InternalError(
        "the tokenizer merges text across a space; chunked text cannot be tokenized exactly, "
        "send token ids instead");
  }
  ids->insert(ids->end(), encoded.begin() + anchor_ids_.size(), encoded.end());
  return absl::OkStatus();
}

absl::Status DocumentTokenizer::ValidateNewText(bool end) {
  // pending_[0, valid_) ends at a character, where UTF-8 decoding restarts:
  // the rest is valid exactly when all of pending_ is.
  const std::string_view unchecked = std::string_view(pending_).substr(valid_);
  if (ValidateUtf8(unchecked, /*allow_incomplete_end=*/!end).ok()) {
    valid_ += CompleteCharactersPrefix(unchecked);
    return absl::OkStatus();
  }
  // Checked again whole only to name the byte as in all of pending_; the
  // error ends the ingest.
  const absl::Status valid = ValidateUtf8(pending_, /*allow_incomplete_end=*/!end);
  return absl::InvalidArgumentError(absl::StrCat(
      "document text is not valid UTF-8 (", valid.message(),
      " of the text not yet tokenized, which starts at document byte ", consumed_, ")"));
}

void DocumentTokenizer::FindNewBoundaries() {
  // Whether byte c starts a segment depends only on the bytes up to it, so
  // what was found before stays true as text arrives.
  const std::string_view held(pending_);
  for (size_t c = std::max<size_t>(scanned_, 1); c < held.size(); ++c) {
    if (IsBoundary(held, c)) last_boundary_ = c;
  }
  scanned_ = held.size();
}

absl::Status DocumentTokenizer::Feed(std::string_view text, bool end, std::vector<int>* ids) {
  const size_t before = pending_.size();
  pending_.append(text);
  if (absl::Status valid = ValidateNewText(end); !valid.ok()) {
    pending_.resize(before);
    return valid;
  }
  FindNewBoundaries();
  // Everything before the last boundary, segment by segment; appended only
  // once all of it is encoded.
  const std::string_view held(pending_);
  const size_t cut = end ? held.size() : last_boundary_;
  std::vector<int> encoded;
  for (size_t start = 0; start < cut;) {
    const size_t next = std::min(NextBoundary(held, start), cut);
    FOT_RETURN_IF_ERROR(Encode(held.substr(start, next - start),
                               consumed_ + static_cast<int64_t>(start), &encoded));
    start = next;
  }
  ids->insert(ids->end(), encoded.begin(), encoded.end());
  consumed_ += static_cast<int64_t>(cut);
  pending_.erase(0, cut);
  // The cut is the last boundary (or the end): none is left in pending_, and
  // what was checked of it is still checked. (A boundary's look-back never
  // reaches before the space it starts with, so the cut does not change which
  // bytes are boundaries.)
  valid_ -= cut;
  scanned_ -= cut;
  last_boundary_ = 0;
  return absl::OkStatus();
}

}  // namespace fot
