// The public Tokenizer API: wraps the SentencePiece backend (sentencepiece_backend.cc),
// turning its plain errors into absl::Status. This file may use Abseil; it must
// never include SentencePiece headers (BUILD-NOTES.md, trap 2).
#include "src/tokenizer/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "src/tokenizer/tokenizer_backend.h"

namespace fot {
namespace {

using tokenizer_internal::BackendError;
using tokenizer_internal::PieceKind;
using tokenizer_internal::SpmBackend;

// The SentencePiece module's entry points, loaded once per process (a loaded
// library is process-wide by nature). See tokenizer_backend.h for why it is
// a module with its own symbol scope.
struct SpmModule {
  tokenizer_internal::LoadSpmFn load = nullptr;
  tokenizer_internal::TrainSpmFn train = nullptr;
  std::string error;  // why loading failed
};

std::string ExecutableDir() {
  char path[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return ".";
  std::string exe(path, n);
  return exe.substr(0, exe.find_last_of('/'));
}

#if defined(__SANITIZE_ADDRESS__)
#define FOT_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FOT_ADDRESS_SANITIZER 1
#endif
#endif

constexpr int kSpmFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#ifdef FOT_ADDRESS_SANITIZER
// AddressSanitizer's dlopen refuses RTLD_DEEPBIND outright (google/sanitizers
// issue 611: a deep-bound library may bypass its allocator). SentencePiece
// still needs its own protobuf, so under ASan (the fuzzers, fuzz/) its
// libraries are opened with the C library's dlopen, past that check; they
// are not instrumented anyway. Our module references no protobuf symbol and
// needs no deep binding: opened plainly it uses ASan's allocator like the rest
// of the process. (What SentencePiece allocates inside libstdc++ then looks
// mismatched to ASan's new/delete check: fuzz/fuzz_runtime.cc.)
void* OpenSpmLibrary(const char* path) {
  using Dlopen = void* (*)(const char*, int);
  static const auto libc_dlopen = reinterpret_cast<Dlopen>(dlsym(RTLD_NEXT, "dlopen"));
  return libc_dlopen(path, kSpmFlags);
}
void* OpenModule(const char* path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
#else
void* OpenSpmLibrary(const char* path) { return dlopen(path, kSpmFlags); }
void* OpenModule(const char* path) { return dlopen(path, kSpmFlags); }
#endif

const SpmModule& Module() {
  static const SpmModule* module = [] {
    auto* m = new SpmModule;
    // SentencePiece itself first, so that it (not only our module) binds to
    // its own protobuf.
    for (const char* library : {"libsentencepiece.so.0", "libsentencepiece_train.so.0"}) {
      if (OpenSpmLibrary(library) == nullptr) {
        m->error = std::string("cannot load ") + library + ": " + dlerror();
        return m;
      }
    }
    // Next to the executable (an install), else where the build put it.
    void* handle = nullptr;
    for (const std::string& path :
         {ExecutableDir() + "/libfot_spm.so", std::string(FOT_SPM_MODULE_PATH)}) {
      if ((handle = OpenModule(path.c_str())) != nullptr) break;
      m->error = "cannot load the SentencePiece module " + path + ": " + dlerror();
    }
    if (handle == nullptr) return m;
    m->load = reinterpret_cast<tokenizer_internal::LoadSpmFn>(
        dlsym(handle, tokenizer_internal::kLoadSpmSymbol));
    m->train = reinterpret_cast<tokenizer_internal::TrainSpmFn>(
        dlsym(handle, tokenizer_internal::kTrainSpmSymbol));
    if (m->load == nullptr || m->train == nullptr) m->error = "the SentencePiece module is broken";
    return m;
  }();
  return *module;
}

absl::Status ToStatus(const BackendError& error) {
  switch (error.kind) {
    case BackendError::Kind::kNone:
      return absl::OkStatus();
    case BackendError::Kind::kNotFound:
      return absl::NotFoundError(error.message);
    case BackendError::Kind::kInvalidArgument:
      return absl::InvalidArgumentError(error.message);
    case BackendError::Kind::kUnavailable:
      return absl::UnavailableError(error.message);
    case BackendError::Kind::kInternal:
      break;
  }
  return absl::InternalError(error.message);
}

// Bytes in a UTF-8 sequence that starts with `lead`; 1 for bytes that cannot
// start one (they decode to U+FFFD on their own).
int Utf8SequenceLength(int lead) {
  if (lead < 0xC0) return 1;  // ASCII, or a stray continuation byte
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

}  // namespace

// --- Tokenizer ----------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<SpmBackend> backend, std::string model_path)
    : backend_(std::move(backend)), model_path_(std::move(model_path)) {}

Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& model_path) {
  const SpmModule& module = Module();
  if (module.load == nullptr) return absl::InternalError(module.error);
  BackendError error;
  std::unique_ptr<SpmBackend> backend(module.load(model_path, &error));
  if (backend == nullptr) {
    if (error.ok())
      error = {BackendError::Kind::kInternal, "tokenizer model '" + model_path + "': load failed"};
    return ToStatus(error);
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(backend), model_path));
}

std::vector<int> Tokenizer::Encode(std::string_view text) const { return backend_->Encode(text); }

std::string Tokenizer::Decode(const std::vector<int>& ids) const { return backend_->Decode(ids); }

int Tokenizer::vocab_size() const { return backend_->vocab_size(); }
int Tokenizer::bos_id() const { return backend_->bos_id(); }
int Tokenizer::eos_id() const { return backend_->eos_id(); }
std::string Tokenizer::PieceText(int id) const { return backend_->Piece(id); }

// --- DetokenizeStream -----------------------------------------------------------

DetokenizeStream::DetokenizeStream(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}

size_t DetokenizeStream::IncompleteTail() const {
  const SpmBackend& backend = *tokenizer_->backend_;
  // The trailing run of byte pieces; only its last (at most 4) bytes matter.
  size_t run = 0;
  while (run < context_.size() && run < 4 &&
         backend.kind(context_[context_.size() - 1 - run]) == PieceKind::kByte) {
    ++run;
  }
  // Find the last byte that is not a continuation byte (10xxxxxx).
  for (size_t back = 1; back <= run; ++back) {
    const int byte = backend.byte_value(context_[context_.size() - back]);
    if ((byte & 0xC0) == 0x80) continue;
    // `back` bytes from this lead to the end: complete if that is enough.
    return back < static_cast<size_t>(Utf8SequenceLength(byte)) ? back : 0;
  }
  // Only continuation bytes (or none): later bytes cannot complete anything.
  return 0;
}

std::string DetokenizeStream::Feed(int id) {
  if (id < 0 || id >= tokenizer_->vocab_size()) return "";
  context_.push_back(id);
  const size_t stable = context_.size() - IncompleteTail();
  if (stable <= emitted_ids_) return "";
  std::string text =
      tokenizer_->Decode(std::vector<int>(context_.begin(), context_.begin() + stable));
  std::string out;
  if (text.compare(0, emitted_text_.size(), emitted_text_) == 0) {
    out = text.substr(emitted_text_.size());
  } else if (text.size() > emitted_text_.size()) {
    // Decoding is prefix-stable given the anchoring rules, so this is not
    // expected; if it happens, never repeat text already returned, and cut at
    // a character boundary so that what is returned stays valid UTF-8.
    size_t cut = emitted_text_.size();
    while (cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) ++cut;
    out = text.substr(cut);
  }
  emitted_ids_ = stable;
  emitted_text_ = std::move(text);
  Compact();
  return out;
}

std::string DetokenizeStream::Flush() {
  std::string out;
  if (context_.size() > emitted_ids_) {
    const std::string text = tokenizer_->Decode(context_);
    if (text.size() > emitted_text_.size()) out = text.substr(emitted_text_.size());
  }
  context_.clear();
  emitted_ids_ = 0;
  emitted_text_.clear();
  return out;
}

void DetokenizeStream::Compact() {
  if (emitted_ids_ < 2) return;
  // The last returned id becomes the anchor: later text decodes the same after
  // it alone as after the whole history if it (a) ends any byte sequence (a
  // byte piece at the end of the returned part always does) and (b) decodes to
  // non-empty text, so Decode does not treat what follows as the start.
  const int anchor = context_[emitted_ids_ - 1];
  const PieceKind kind = tokenizer_->backend_->kind(anchor);
  if (kind != PieceKind::kNormal && kind != PieceKind::kByte) return;
  std::string anchor_text = tokenizer_->Decode({anchor});
  if (anchor_text.empty()) return;
  context_.erase(context_.begin(), context_.begin() + (emitted_ids_ - 1));
  emitted_ids_ = 1;
  emitted_text_ = std::move(anchor_text);
}

// --- training -------------------------------------------------------------------

absl::Status TrainTokenizer(const std::string& corpus_path, int vocab_size,
                            const std::string& model_path, Env* env) {
  if (vocab_size <= 0) {
    return absl::InvalidArgumentError("tokenizer corpus '" + corpus_path +
                                      "': vocab_size must be positive, got " +
                                      std::to_string(vocab_size));
  }
  const SpmModule& module = Module();
  if (module.train == nullptr) return absl::InternalError(module.error);
  std::string model;
  FOT_RETURN_IF_ERROR(ToStatus(module.train(corpus_path, vocab_size, &model)));
  // Written whole or not at all, so `model_path` is never half a model.
  const absl::Status written = WriteFileAtomically(*env, model_path, model);
  if (!written.ok()) {
    return absl::UnavailableError(
        absl::StrCat("tokenizer model '", model_path, "': cannot write: ", written.message()));
  }
  return absl::OkStatus();
}

}  // namespace fot
