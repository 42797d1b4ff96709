// Internal to fot_tokenizer: the SentencePiece backend behind fot::Tokenizer.
//
// SentencePiece 0.1.97's header declares its own absl::string_view, which
// collides with Abseil's (BUILD-NOTES.md, trap 2). So the backend lives in
// tokenizer.cc, the only file that includes SentencePiece headers, and this
// interface uses neither SentencePiece nor Abseil types: errors come back as a
// plain BackendError. tokenizer_status.cc turns them into absl::Status for the
// public API in tokenizer.h. Nothing outside fot_tokenizer should include this.
#ifndef FOTSERVE_SRC_TOKENIZER_BACKEND_H_
#define FOTSERVE_SRC_TOKENIZER_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fot {
namespace tokenizer_internal {

// An error without Abseil: a kind (mapped to an absl::StatusCode by the caller)
// and a message that already names the file and the problem.
struct BackendError {
  enum class Kind { kNone, kNotFound, kInvalidArgument, kUnavailable, kInternal };
  Kind kind = Kind::kNone;
  std::string message;

  bool ok() const { return kind == Kind::kNone; }
};

// What a vocabulary entry is, as far as decoding cares.
enum class PieceKind : uint8_t {
  kNormal,   // text, user-defined symbols included (may start with U+2581, a word boundary)
  kControl,  // <s>, </s>: decodes to nothing
  kUnknown,  // <unk>: decodes to " \u2047 "
  kUnused,
  kByte,  // <0xAB>: one raw byte (byte fallback)
};

// A loaded SentencePiece model. Immutable after Load(); every method is const
// and safe to call from several threads at once.
class SpmBackend {
 public:
  // Loads the model file at `path`. On failure returns null and fills `*error`.
  static std::unique_ptr<SpmBackend> Load(const std::string& path, BackendError* error);

  ~SpmBackend();
  SpmBackend(const SpmBackend&) = delete;
  SpmBackend& operator=(const SpmBackend&) = delete;

  // Token ids of `text` (no BOS/EOS). Empty if SentencePiece rejects the text.
  std::vector<int> Encode(std::string_view text) const;
  // Text of `ids`; ids outside [0, vocab_size()) are skipped.
  std::string Decode(const std::vector<int>& ids) const;

  int vocab_size() const;
  int bos_id() const;  // -1 if the model has none
  int eos_id() const;  // -1 if the model has none
  // The vocabulary entry of `id` ("▁the", "<0x0A>", "<s>"); "" if out of range.
  std::string Piece(int id) const;
  // Callers pass 0 <= id < vocab_size().
  PieceKind kind(int id) const { return kinds_[id]; }
  // The byte of a kByte piece, otherwise -1. Callers pass 0 <= id < vocab_size().
  int byte_value(int id) const { return byte_values_[id]; }

 private:
  struct Impl;
  explicit SpmBackend(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
  std::vector<PieceKind> kinds_;      // [vocab_size]
  std::vector<int16_t> byte_values_;  // [vocab_size]
};

// Trains a byte-fallback BPE model on the lines of `corpus_path` and writes it
// to `model_path` (replaced only once training succeeded). Deterministic.
BackendError TrainSpm(const std::string& corpus_path, int vocab_size,
                      const std::string& model_path);

}  // namespace tokenizer_internal
}  // namespace fot

#endif  // FOTSERVE_SRC_TOKENIZER_BACKEND_H_
