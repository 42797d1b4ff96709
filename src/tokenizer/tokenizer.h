// Text <-> token ids with a SentencePiece model (LLaMA's tokenizer.model).
//
// A Tokenizer is immutable once loaded: every const method may be called from
// several threads at once. A DetokenizeStream belongs to one generation stream
// and is not thread-safe.
//
// SentencePiece itself stays out of this header (BUILD-NOTES.md, trap 2): it
// lives behind tokenizer_internal::SpmBackend, in sentencepiece_backend.cc.
#ifndef FOTSERVE_SRC_TOKENIZER_TOKENIZER_H_
#define FOTSERVE_SRC_TOKENIZER_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"

namespace fot {

namespace tokenizer_internal {
class SpmBackend;
}  // namespace tokenizer_internal

class Tokenizer {
 public:
  // Loads a SentencePiece model file. NotFound if `model_path` does not exist;
  // InvalidArgument if it is empty or not a SentencePiece model. Messages name
  // the file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`, without BOS (callers that need one prepend bos_id()).
  // With a byte-fallback model any UTF-8 text encodes without <unk>. Returns an
  // empty vector only for empty text (or if SentencePiece rejects the input).
  std::vector<int> Encode(std::string_view text) const;

  // The text of `ids`. As SentencePiece does: BOS/EOS decode to nothing, the
  // word-boundary space of the first piece is dropped, byte pieces that do not
  // form valid UTF-8 become U+FFFD. Ids outside [0, vocab_size()) are skipped.
  std::string Decode(const std::vector<int>& ids) const;

  int vocab_size() const;
  int bos_id() const;  // -1 if the model defines none
  int eos_id() const;  // -1 if the model defines none
  // The vocabulary entry of `id`, as stored ("▁the", "<0x0A>", "<s>"); "" if
  // `id` is out of range. For display of single tokens; use Decode for text.
  std::string PieceText(int id) const;

  const std::string& model_path() const { return model_path_; }

 private:
  friend class DetokenizeStream;
  Tokenizer(std::unique_ptr<tokenizer_internal::SpmBackend> backend, std::string model_path);

  std::unique_ptr<tokenizer_internal::SpmBackend> backend_;
  std::string model_path_;
};

// Turns generated ids into text as they arrive. Feed() returns only text that
// later ids cannot change: a UTF-8 character split over several byte pieces is
// held back until complete, and the first piece's leading space is dropped as
// Decode drops it. So for any ids,
//
//   Feed(ids[0]) + Feed(ids[1]) + ... + Feed(ids[n-1]) + Flush() == Decode(ids).
//
// Cost per id is small and does not grow with the length of the stream.
class DetokenizeStream {
 public:
  // `tokenizer` is not owned and must outlive the stream.
  explicit DetokenizeStream(const Tokenizer* tokenizer);

  // Adds one id; returns the text it completes (often "", sometimes more than
  // one character). Ids outside [0, vocab_size) are skipped, as by Decode.
  std::string Feed(int id);

  // Ends the stream: returns what is still held back (an incomplete UTF-8
  // sequence, decoded as Decode would, i.e. as U+FFFD). The next Feed starts a
  // new stream, as if freshly constructed.
  std::string Flush();

 private:
  // Number of trailing ids of context_ that are byte pieces of a UTF-8
  // sequence still missing bytes.
  size_t IncompleteTail() const;
  // Drops context that can no longer influence the text of later ids.
  void Compact();

  const Tokenizer* tokenizer_;  // not owned
  // The ids whose text matters for what comes next: everything since the last
  // anchor (a text piece whose own decoding is non-empty, after which Decode
  // neither drops a leading space nor merges bytes across it).
  std::vector<int> context_;
  size_t emitted_ids_ = 0;    // context_[0, emitted_ids_) have been returned
  std::string emitted_text_;  // == Decode(context_[0, emitted_ids_))
};

// Trains a SentencePiece model on `corpus_path` (UTF-8 text, one sentence per
// line) and writes it to `model_path`: BPE with `vocab_size` pieces, byte
// fallback (any text encodes), no normalisation (Decode(Encode(s)) == s),
// unk/bos/eos = 0/1/2 as in LLaMA. Deterministic: the same corpus and size give
// the same file. `model_path` is replaced only if training succeeds.
[[nodiscard]] absl::Status TrainTokenizer(const std::string& corpus_path, int vocab_size,
                                          const std::string& model_path, Env* env = Env::Default());

}  // namespace fot

#endif  // FOTSERVE_SRC_TOKENIZER_TOKENIZER_H_
