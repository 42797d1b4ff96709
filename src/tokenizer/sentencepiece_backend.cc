// The SentencePiece backend of fot::Tokenizer (see tokenizer_backend.h).
//
// This is the only file that includes SentencePiece headers, and it must
// include no Abseil header (directly or through another project header):
// SentencePiece 0.1.97 declares its own absl::string_view (BUILD-NOTES.md,
// trap 2).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "src/tokenizer/tokenizer_backend.h"

namespace fot {
namespace tokenizer_internal {
namespace {

using Kind = BackendError::Kind;

BackendError Error(Kind kind, std::string message) {
  return BackendError{kind, std::move(message)};
}

std::string ModelPrefix(const std::string& path) { return "tokenizer model '" + path + "': "; }

// Reads a whole file. `what` names the file's role in messages.
BackendError ReadFile(const std::string& path, const std::string& what, std::string* out) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Error(Kind::kInvalidArgument, what + "is a directory, expected a file");
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return Error(Kind::kNotFound, what + "no such file");
    return Error(Kind::kUnavailable, what + "cannot open for reading: " +
                                         (err != 0 ? std::strerror(err) : "I/O error"));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return Error(Kind::kUnavailable, what + "read failed");
  *out = std::move(buffer).str();
  return {};
}

// "<0xAB>" -> 0xAB; -1 if `piece` is not of that form.
int ParseBytePiece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int value = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = piece[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

// Feeds the trainer the corpus one line at a time (without the newline), so
// the corpus path never passes through SentencePiece's flag parser, where
// commas or spaces in a path would be misread.
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(std::istream* in) : in_(in) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    if (!std::getline(*in_, line_)) {
      done_ = true;
      return;
    }
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override {
    if (in_->bad()) {
      return sentencepiece::util::Status(sentencepiece::util::StatusCode::kDataLoss,
                                         "read error in the corpus");
    }
    return sentencepiece::util::Status();
  }

 private:
  std::istream* in_;  // not owned
  std::string line_;
  bool done_ = false;
};

}  // namespace

class SentencePieceBackend final : public SpmBackend {
 public:
  explicit SentencePieceBackend(std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
      : processor_(std::move(processor)) {
    const sentencepiece::SentencePieceProcessor& p = *processor_;
    const int n = p.GetPieceSize();
    kinds_.resize(n);
    byte_values_.resize(n);
    for (int id = 0; id < n; ++id) {
      int byte = -1;
      PieceKind kind = PieceKind::kNormal;
      if (p.IsControl(id)) {
        kind = PieceKind::kControl;
      } else if (p.IsUnknown(id)) {
        kind = PieceKind::kUnknown;
      } else if (p.IsUnused(id)) {
        kind = PieceKind::kUnused;
      } else if (p.IsByte(id)) {
        byte = ParseBytePiece(p.IdToPiece(id));
        kind = byte >= 0 ? PieceKind::kByte : PieceKind::kNormal;
      }
      kinds_[id] = kind;
      byte_values_[id] = static_cast<int16_t>(byte);
    }
  }

  std::vector<int> Encode(std::string_view text) const override {
    std::vector<int> ids;
    if (!processor_->Encode(text, &ids).ok()) ids.clear();
    return ids;
  }

  std::string Decode(const std::vector<int>& ids) const override {
    const int n = vocab_size();
    std::vector<int> valid;
    valid.reserve(ids.size());
    for (int id : ids) {
      if (id >= 0 && id < n) valid.push_back(id);
    }
    std::string text;
    if (!processor_->Decode(valid, &text).ok()) text.clear();
    return text;
  }

  int bos_id() const override { return processor_->bos_id(); }
  int eos_id() const override { return processor_->eos_id(); }

  std::string Piece(int id) const override {
    if (id < 0 || id >= vocab_size()) return "";
    return processor_->IdToPiece(id);
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

SpmBackend* LoadSpm(const std::string& path, BackendError* error) {
  const std::string prefix = ModelPrefix(path);
  std::string bytes;
  *error = ReadFile(path, prefix, &bytes);
  if (!error->ok()) return nullptr;
  if (bytes.empty()) {
    *error = Error(Kind::kInvalidArgument, prefix + "file is empty, not a SentencePiece model");
    return nullptr;
  }
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status status;
  try {
    status = processor->LoadFromSerializedProto(bytes);
  } catch (const std::exception& e) {
    // SentencePiece reports most damage as a status, but the trie it builds
    // of the pieces (Darts) throws, e.g. for a piece that starts with a NUL
    // byte (found by fuzz/tokenizer): uncaught, it aborted the process.
    *error = Error(Kind::kInvalidArgument,
                   prefix + "not a usable SentencePiece model: its pieces cannot be indexed (" +
                       e.what() + ")");
    return nullptr;
  }
  if (!status.ok()) {
    *error = Error(Kind::kInvalidArgument,
                   prefix + "not a SentencePiece model file such as LLaMA's tokenizer.model (" +
                       status.ToString() + ")");
    return nullptr;
  }
  if (processor->GetPieceSize() <= 0) {
    *error = Error(Kind::kInvalidArgument, prefix + "the model has an empty vocabulary");
    return nullptr;
  }
  *error = {};
  return new SentencePieceBackend(std::move(processor));
}

BackendError TrainSpm(const std::string& corpus_path, int vocab_size, std::string* model) {
  const std::string corpus_prefix = "tokenizer corpus '" + corpus_path + "': ";
  errno = 0;
  std::ifstream corpus(corpus_path, std::ios::binary);
  if (!corpus) {
    const int err = errno;
    if (err == ENOENT) return Error(Kind::kNotFound, corpus_prefix + "no such file");
    return Error(Kind::kUnavailable, corpus_prefix + "cannot open for reading: " +
                                         (err != 0 ? std::strerror(err) : "I/O error"));
  }

  // LLaMA-style settings: BPE with byte fallback (any text encodes, nothing is
  // <unk>; characters outside the most frequent 99.95% of the corpus are left
  // to byte pieces), no normalisation and no whitespace folding
  // (Decode(Encode(s)) == s), digits split. One thread and no sentence
  // sampling keep it deterministic.
  const std::unordered_map<std::string, std::string> options = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(vocab_size)},
      {"byte_fallback", "true"},
      {"character_coverage", "0.9995"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"input_sentence_size", "0"},
      {"num_threads", "1"},
      {"minloglevel", "2"},  // training progress is not an error: keep stderr quiet
  };
  LineIterator lines(&corpus);
  std::string serialized;
  const sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(options, &lines, &serialized);
  if (!status.ok()) {
    return Error(Kind::kInvalidArgument, corpus_prefix + "training a " +
                                             std::to_string(vocab_size) +
                                             "-piece tokenizer failed: " + status.ToString());
  }

  *model = std::move(serialized);
  return {};
}

}  // namespace tokenizer_internal
}  // namespace fot

// The module's entry points, found by dlsym (tokenizer_backend.h).
extern "C" __attribute__((visibility("default"))) fot::tokenizer_internal::SpmBackend* fot_spm_load(
    const std::string& path, fot::tokenizer_internal::BackendError* error) {
  return fot::tokenizer_internal::LoadSpm(path, error);
}

extern "C" __attribute__((visibility("default"))) fot::tokenizer_internal::BackendError
fot_spm_train(const std::string& corpus_path, int vocab_size, std::string* model) {
  return fot::tokenizer_internal::TrainSpm(corpus_path, vocab_size, model);
}
