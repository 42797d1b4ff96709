// Internal to fot_tokenizer: the SentencePiece backend behind fot::Tokenizer.
//
// SentencePiece 0.1.97's header declares its own absl::string_view, which
// collides with Abseil's (BUILD-NOTES.md, trap 2). So the backend lives in
// sentencepiece_backend.cc, the only file that includes SentencePiece headers, and this
// interface uses neither SentencePiece nor Abseil types: errors come back as a
// plain BackendError. tokenizer.cc turns them into absl::Status for the
// public API in tokenizer.h. Nothing outside fot_tokenizer should include this.
//
// Debian's libsentencepiece also exports a bundled copy of protobuf 3.14,
// which clashes with the system's libprotobuf 3.21 that gRPC needs: linked
// into one process, protobuf's start-up code runs SentencePiece's copy and
// crashes before main. So sentencepiece_backend.cc is built as a module (libfot_spm.so)
// that tokenizer.cc loads with dlopen(RTLD_LOCAL | RTLD_DEEPBIND):
// SentencePiece then binds to its own protobuf and the rest of the process
// never sees it. The module's entry points are the extern "C" functions below.
#ifndef FOTSERVE_SRC_TOKENIZER_TOKENIZER_BACKEND_H_
#define FOTSERVE_SRC_TOKENIZER_TOKENIZER_BACKEND_H_

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

// A loaded SentencePiece model. Immutable once loaded; every method is const
// and safe to call from several threads at once. Virtual, because the
// implementation lives in the dlopen'ed module.
class SpmBackend {
 public:
  virtual ~SpmBackend() = default;

  // Token ids of `text` (no BOS/EOS). Empty if SentencePiece rejects the text.
  virtual std::vector<int> Encode(std::string_view text) const = 0;
  // Text of `ids`; ids outside [0, vocab_size()) are skipped.
  virtual std::string Decode(const std::vector<int>& ids) const = 0;

  int vocab_size() const { return static_cast<int>(kinds_.size()); }
  virtual int bos_id() const = 0;  // -1 if the model has none
  virtual int eos_id() const = 0;  // -1 if the model has none
  // The vocabulary entry of `id` ("▁the", "<0x0A>", "<s>"); "" if out of range.
  virtual std::string Piece(int id) const = 0;
  // Callers pass 0 <= id < vocab_size().
  PieceKind kind(int id) const { return kinds_[id]; }
  // The byte of a kByte piece, otherwise -1. Callers pass 0 <= id < vocab_size().
  int byte_value(int id) const { return byte_values_[id]; }

 protected:
  std::vector<PieceKind> kinds_;      // [vocab_size]
  std::vector<int16_t> byte_values_;  // [vocab_size]
};

// The module's entry points (sentencepiece_backend.cc), looked up by these names.
// Loads the model file at `path`; on failure returns null and fills `*error`.
using LoadSpmFn = SpmBackend* (*)(const std::string& path, BackendError* error);
inline constexpr char kLoadSpmSymbol[] = "fot_spm_load";
// Trains a byte-fallback BPE model on the lines of `corpus_path`; its model
// file's bytes go to *model (the caller writes them). Deterministic.
using TrainSpmFn = BackendError (*)(const std::string& corpus_path, int vocab_size,
                                    std::string* model);
inline constexpr char kTrainSpmSymbol[] = "fot_spm_train";

}  // namespace tokenizer_internal
}  // namespace fot

#endif  // FOTSERVE_SRC_TOKENIZER_TOKENIZER_BACKEND_H_
