#include "src/server/session_manager.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

namespace fs = std::filesystem;

constexpr char kStateDir[] = "state";
constexpr char kIngestFile[] = "ingest.json";
// The word encoded before a later segment of a document; its own tokens are
// then dropped (see DocumentTokenizer).
constexpr char kAnchor[] = "a";
constexpr size_t kMaxDocumentName = 256;

// U+2581, the character SentencePiece writes for a space; input text holding
// it is split at it as at a space.
constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";

bool EndsWithSpace(std::string_view text) {
  return !text.empty() && (text.back() == ' ' || text.ends_with(kSpaceSymbol));
}

int64_t DirectoryBytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      const auto size = it->file_size(size_error);
      if (!size_error) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

nlohmann::json StateJson(const DocumentState& s) {
  return {{"text", s.text}, {"complete", s.complete}, {"offset", s.offset}, {"tokens", s.tokens}};
}

DocumentState StateFromJson(const nlohmann::json& j) {
  DocumentState s;
  s.text = j.value("text", true);
  s.complete = j.value("complete", false);
  s.offset = j.value("offset", int64_t{0});
  s.tokens = j.value("tokens", int64_t{0});
  return s;
}

}  // namespace

// --- options and names ------------------------------------------------------

namespace {

// The attention options of `spec` over `defaults`, resolved for `config`.
absl::StatusOr<AttentionOptions> ResolveSessionAttention(const SessionOptionsSpec& spec,
                                                         const SessionOptions& defaults,
                                                         const ModelConfig& config) {
  const AttentionSpec attention{spec.attention, spec.n_global, spec.local_window,
                                spec.memory_positioning, spec.memory_layers};
  FOT_ASSIGN_OR_RETURN(const AttentionOptions resolved,
                       ApplyAttentionSpec(attention, defaults.attention, config));
  if (resolved.mode == AttentionMode::kLambda && spec.last_context_length != 0) {
    return absl::InvalidArgumentError(
        "last_context_length is an option of attention 'fot'; under 'lambda' the local branch is "
        "local_window");
  }
  return resolved;
}

}  // namespace

absl::StatusOr<SessionOptions> ResolveSessionOptions(const SessionOptionsSpec& spec,
                                                     const SessionOptions& defaults,
                                                     const ModelConfig& config) {
  SessionOptions options = defaults;
  if (!spec.index.empty()) {
    MemoryOptions memory;
    memory.dtype = defaults.memory.dtype;
    absl::Status status = ParseIndexSpec(spec.index, &memory);
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("index: ", status.message()));
    options.memory = memory;
  }
  if (!spec.memory_dtype.empty()) {
    auto dtype = ParseStorageType(spec.memory_dtype);
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("memory_dtype: ", dtype.status().message()));
    }
    options.memory.dtype = *dtype;
  }
  absl::Status valid = ValidateMemoryOptions(options.memory, config.head_dim());
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("index: ", valid.message()));
  if (!spec.retrieval.empty()) {
    auto retrieval = ParseRetrieval(spec.retrieval);
    if (!retrieval.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("retrieval: ", retrieval.status().message()));
    }
    options.retrieval = *retrieval;
  }
  if (spec.last_context_length != 0) {
    if (absl::Status s =
            CheckLastContextLength(spec.last_context_length, config.max_position_embeddings);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s.message(), ", or 0 for the model's own"));
    }
  }
  if (spec.last_context_length > 0) options.last_context_length = spec.last_context_length;
  FOT_ASSIGN_OR_RETURN(options.attention, ResolveSessionAttention(spec, defaults, config));
  return options;
}

absl::Status ValidateName(std::string_view name, std::string_view what) {
  const bool ok = !name.empty() && name.size() <= 64 && name.front() != '.' &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      std::string(what), " '", std::string(name.substr(0, 80)),
      "' is not a valid name: use 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'"));
}

absl::Status ValidateUtf8(std::string_view text, bool allow_incomplete_end) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    int length;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      length = 2, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4, min = 0x10000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i));
    }
    uint32_t code = c & (0x7F >> length);
    for (int k = 1; k < length; ++k) {
      if (i + k >= n) {
        if (allow_incomplete_end) return absl::OkStatus();
        return absl::InvalidArgumentError(
            absl::StrCat("invalid UTF-8: the text ends inside a character at byte ", i));
      }
      if ((s[i + k] & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i + k));
      }
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 at byte ", i));
    }
    i += length;
  }
  return absl::OkStatus();
}

// --- DocumentTokenizer ------------------------------------------------------

DocumentTokenizer::DocumentTokenizer(const Tokenizer* tokenizer, int64_t consumed)
    : tokenizer_(tokenizer), anchor_ids_(tokenizer->Encode(kAnchor)), consumed_(consumed) {}

absl::Status DocumentTokenizer::Encode(std::string_view segment, std::vector<int>* ids) const {
  if (segment.empty()) return absl::OkStatus();
  if (consumed_ == 0) {
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

absl::Status DocumentTokenizer::Feed(std::string_view text, bool end, std::vector<int>* ids) {
  const size_t before = pending_.size();
  pending_.append(text);
  absl::Status valid = ValidateUtf8(pending_, /*allow_incomplete_end=*/!end);
  if (!valid.ok()) {
    pending_.resize(before);
    return absl::InvalidArgumentError(absl::StrCat(
        "document text is not valid UTF-8 (", valid.message(),
        " of the text not yet tokenized, which starts at document byte ", consumed_, ")"));
  }
  // The cut: the start of the last run of spaces, not at the very start.
  size_t cut = end ? pending_.size() : 0;
  if (!end) {
    for (size_t c = pending_.size(); c-- > 1;) {
      if (pending_[c] == ' ' && !EndsWithSpace(std::string_view(pending_).substr(0, c))) {
        cut = c;
        break;
      }
    }
  }
  if (cut == 0) return absl::OkStatus();
  FOT_RETURN_IF_ERROR(Encode(std::string_view(pending_).substr(0, cut), ids));
  consumed_ += static_cast<int64_t>(cut);
  pending_.erase(0, cut);
  return absl::OkStatus();
}

// --- ManagedSession and WriterLock -------------------------------------------

DocumentState ManagedSession::Document(const std::string& document) const {
  absl::MutexLock lock(&mu_);
  auto it = documents_.find(document);
  if (it != documents_.end()) return it->second;
  DocumentState other;
  other.text = false;
  other.complete = true;
  return other;
}

DocumentState ManagedSession::SavedDocument(const std::string& document) const {
  absl::MutexLock lock(&mu_);
  auto it = saved_.find(document);
  return it != saved_.end() ? it->second : DocumentState{};
}

bool WriterLock::FreeOrDeleted(ManagedSession* s) { return !s->writer_ || s->deleted_; }

absl::StatusOr<WriterLock> WriterLock::Acquire(std::shared_ptr<ManagedSession> session,
                                               absl::Duration wait) {
  ManagedSession* s = session.get();
  const bool free = s->mu_.LockWhenWithTimeout(absl::Condition(&FreeOrDeleted, s), wait);
  if (s->deleted_) {
    s->mu_.Unlock();
    return absl::NotFoundError(absl::StrCat("session '", s->name_, "' was deleted"));
  }
  if (!free) {
    s->mu_.Unlock();
    return absl::AbortedError(absl::StrCat(
        "session '", s->name_, "' is busy: another stream is ingesting into it; retry later"));
  }
  s->writer_ = true;
  s->mu_.Unlock();
  return WriterLock(std::move(session));
}

WriterLock::~WriterLock() {
  if (session_ == nullptr) return;
  absl::MutexLock lock(&session_->mu_);
  session_->writer_ = false;
}

// --- SessionManager ---------------------------------------------------------

absl::StatusOr<std::unique_ptr<SessionManager>> SessionManager::Open(
    const Engine* engine, const Tokenizer* tokenizer, SessionManagerOptions options,
    std::vector<std::string>* load_errors) {
  if (options.max_sessions < 1) return absl::InvalidArgumentError("max_sessions must be >= 1");
  std::unique_ptr<SessionManager> manager(
      new SessionManager(engine, tokenizer, std::move(options)));
  const std::string& data_dir = manager->options_.data_dir;
  if (data_dir.empty()) return manager;
  Env& env = *manager->options_.env;
  FOT_RETURN_IF_ERROR(env.CreateDirs(data_dir + "/sessions"));
  FOT_RETURN_IF_ERROR(env.CreateDirs(data_dir + "/snapshots"));
  FOT_ASSIGN_OR_RETURN(const std::vector<std::string> entries, env.ListDir(data_dir + "/sessions"));
  for (const std::string& name : entries) {
    if (!ValidateName(name, "session").ok() || !fs::is_directory(manager->SessionDir(name))) {
      continue;  // not a session's directory
    }
    const std::string dir = manager->SessionDir(name);
    auto loaded = manager->LoadFrom(name, dir, dir);
    if (!loaded.ok()) {
      if (load_errors != nullptr) {
        load_errors->push_back(absl::StrCat("session '", name, "': ", loaded.status().message()));
      }
      continue;
    }
    absl::MutexLock lock(&manager->mu_);
    manager->sessions_[name] = *std::move(loaded);
  }
  return manager;
}

std::string SessionManager::SessionDir(const std::string& name) const {
  return options_.data_dir.empty() ? "" : options_.data_dir + "/sessions/" + name;
}

std::string SessionManager::SnapshotDir(const std::string& name) const {
  return options_.data_dir + "/snapshots/" + name;
}

absl::Status SessionManager::CheckRunning() const {
  if (shutting_down_) return absl::UnavailableError("the server is shutting down");
  return absl::OkStatus();
}

void SessionManager::Shutdown() { shutting_down_ = true; }

bool SessionManager::shutting_down() const { return shutting_down_; }

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::Create(
    const std::string& name, const SessionOptionsSpec& spec) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  FOT_RETURN_IF_ERROR(ValidateName(name, "session name"));
  FOT_ASSIGN_OR_RETURN(SessionOptions resolved,
                       ResolveSessionOptions(spec, options_.defaults, engine_->config()));
  std::shared_ptr<ManagedSession> managed;
  {
    absl::MutexLock lock(&mu_);
    FOT_RETURN_IF_ERROR(CheckFreeSlot(name));
    const std::string dir = SessionDir(name);
    if (!dir.empty() && fs::exists(dir + "/" + kStateDir)) {
      return absl::AlreadyExistsError(absl::StrCat("the data directory holds a saved session '",
                                                   name, "' that did not load at startup; remove ",
                                                   dir, " or choose another name"));
    }
    FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(engine_, resolved));
    managed.reset(new ManagedSession(name, std::move(session), dir));
    sessions_[name] = managed;
  }
  return PersistNew(std::move(managed));
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::Get(const std::string& name) const {
  if (shutting_down_) return absl::UnavailableError("the server is shutting down");
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(name);
  if (it == sessions_.end()) {
    return absl::NotFoundError(absl::StrCat("no session '", name.substr(0, 80), "'"));
  }
  return it->second;
}

std::vector<std::shared_ptr<ManagedSession>> SessionManager::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<ManagedSession>> out;
  for (const auto& [name, session] : sessions_) out.push_back(session);
  return out;
}

int SessionManager::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(sessions_.size());
}

absl::Status SessionManager::Delete(const std::string& name) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  std::shared_ptr<ManagedSession> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(name);
    if (it == sessions_.end()) {
      return absl::NotFoundError(absl::StrCat("no session '", name.substr(0, 80), "'"));
    }
    session = it->second;
    sessions_.erase(it);
  }
  absl::MutexLock save(&session->save_mu_);  // waits for a save in progress
  {
    absl::MutexLock lock(&session->mu_);
    session->deleted_ = true;
  }
  if (!session->dir_.empty()) {
    if (absl::Status removed = options_.env->RemoveAll(session->dir_); !removed.ok()) {
      return absl::Status(removed.code(),
                          absl::StrCat("session '", name,
                                       "' is deleted but its files are not: ", removed.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> SessionManager::Persist(ManagedSession& session, bool force) {
  absl::MutexLock save(&session.save_mu_);
  {
    absl::MutexLock lock(&session.mu_);
    if (session.deleted_) {
      return absl::NotFoundError(absl::StrCat("session '", session.name_, "' was deleted"));
    }
    const absl::Duration wait = std::max(options_.min_save_interval,
                                         options_.save_cost_factor * session.last_save_duration_);
    if (!force && absl::Now() - session.last_save_ < wait) return false;
    if (session.dir_.empty()) {
      session.saved_ = session.documents_;
      session.last_save_ = absl::Now();
      return true;
    }
  }
  const absl::Time start = absl::Now();
  FOT_RETURN_IF_ERROR(SaveTo(session, session.dir_));
  absl::MutexLock lock(&session.mu_);
  session.last_save_duration_ = absl::Now() - start;
  return true;
}

absl::Status SessionManager::SaveTo(ManagedSession& session, const std::string& dir) {
  absl::MutexLock append(&session.append_mu_);
  std::map<std::string, DocumentState> documents, saved;
  {
    absl::MutexLock lock(&session.mu_);
    documents = session.documents_;
    saved = session.saved_;
  }
  Env& env = *options_.env;
  FOT_RETURN_IF_ERROR(env.CreateDirs(dir));
  // The bookkeeping is written before the session: each document lists the
  // state of the previous save and the new one, and loading picks the one
  // whose token count matches the session that was actually saved. So a
  // crash between the two writes never pairs a session with the wrong
  // offsets.
  nlohmann::json meta;
  meta["format"] = "fotserve-ingest 1";
  meta["documents"] = nlohmann::json::object();
  for (const auto& [name, state] : documents) {
    nlohmann::json candidates = nlohmann::json::array();
    auto old = saved.find(name);
    if (old != saved.end()) candidates.push_back(StateJson(old->second));
    candidates.push_back(StateJson(state));
    meta["documents"][name] = candidates;
  }
  FOT_RETURN_IF_ERROR(WriteFileAtomically(env, dir + "/" + kIngestFile, meta.dump()));
  FOT_RETURN_IF_ERROR(session.session().Save(dir + "/" + kStateDir, &env));
  if (dir == session.dir_) {
    absl::MutexLock lock(&session.mu_);
    session.saved_ = documents;
    session.last_save_ = absl::Now();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::LoadFrom(const std::string& name,
                                                                         const std::string& from,
                                                                         const std::string& dir) {
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                       Session::Load(engine_, from + "/" + kStateDir));
  nlohmann::json meta = nlohmann::json::object();
  if (std::ifstream in(from + "/" + kIngestFile); in) {
    meta = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.is_object() || !meta.contains("documents") ||
        !meta["documents"].is_object()) {
      return absl::DataLossError(absl::StrCat(from, "/", kIngestFile, " is damaged"));
    }
  }
  std::map<std::string, DocumentState> documents;
  std::map<std::string, int64_t> in_session;
  for (const DocumentInfo& d : session->Documents()) in_session[d.name] = d.tokens;
  if (meta.contains("documents")) {
    for (const auto& [doc, candidates] : meta["documents"].items()) {
      auto it = in_session.find(doc);
      const int64_t tokens = it == in_session.end() ? 0 : it->second;
      std::optional<DocumentState> match;
      for (const auto& c : candidates) {
        DocumentState s = StateFromJson(c);
        if (s.tokens == tokens) match = s;  // the latest matching candidate
      }
      if (match.has_value()) {
        documents[doc] = *match;
      } else if (it != in_session.end()) {
        // Cannot tell where the document's text stands: not resumable.
        DocumentState s = StateFromJson(candidates.back());
        s.complete = true;
        s.tokens = tokens;
        documents[doc] = s;
      }
    }
  }
  std::shared_ptr<ManagedSession> managed(new ManagedSession(name, std::move(session), dir));
  absl::MutexLock lock(&managed->mu_);
  managed->documents_ = documents;
  managed->saved_ = documents;
  managed->last_save_ = absl::Now();
  return managed;
}

absl::StatusOr<int64_t> SessionManager::SaveSnapshot(const std::string& session_name,
                                                     const std::string& snapshot, bool overwrite) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  FOT_ASSIGN_OR_RETURN(std::shared_ptr<ManagedSession> session, Get(session_name));
  if (options_.data_dir.empty()) {
    return absl::FailedPreconditionError("the server has no data directory (--data-dir)");
  }
  if (snapshot.empty()) {
    FOT_RETURN_IF_ERROR(Persist(*session, /*force=*/true).status());
    return DirectoryBytes(session->dir_);
  }
  FOT_RETURN_IF_ERROR(ValidateName(snapshot, "snapshot name"));
  const std::string dir = SnapshotDir(snapshot);
  absl::MutexLock save(&session->save_mu_);
  if (fs::exists(dir)) {
    if (!overwrite) {
      return absl::AlreadyExistsError(
          absl::StrCat("snapshot '", snapshot, "' exists; set overwrite to replace it"));
    }
  }
  FOT_RETURN_IF_ERROR(SaveTo(*session, dir));
  return DirectoryBytes(dir);
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::LoadSnapshot(
    const std::string& snapshot, const std::string& session_name) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  if (options_.data_dir.empty()) {
    return absl::FailedPreconditionError("the server has no data directory (--data-dir)");
  }
  FOT_RETURN_IF_ERROR(ValidateName(snapshot, "snapshot name"));
  const std::string name = session_name.empty() ? snapshot : session_name;
  FOT_RETURN_IF_ERROR(ValidateName(name, "session name"));
  const std::string from = SnapshotDir(snapshot);
  if (!fs::exists(from + "/" + kStateDir)) {
    return absl::NotFoundError(absl::StrCat("no snapshot '", snapshot, "'"));
  }
  // Loaded outside the manager's lock (a session's locks are never taken
  // inside it), then checked again.
  FOT_ASSIGN_OR_RETURN(std::shared_ptr<ManagedSession> managed,
                       LoadFrom(name, from, SessionDir(name)));
  {
    absl::MutexLock lock(&mu_);
    FOT_RETURN_IF_ERROR(CheckFreeSlot(name));
    sessions_[name] = managed;
  }
  return PersistNew(std::move(managed));
}

absl::Status SessionManager::CheckFreeSlot(const std::string& name) const {
  if (sessions_.count(name) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("session '", name, "' already exists"));
  }
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds its maximum of ", options_.max_sessions, " sessions; delete one first"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::PersistNew(
    std::shared_ptr<ManagedSession> managed) {
  absl::StatusOr<bool> saved = Persist(*managed, /*force=*/true);
  if (!saved.ok()) {
    absl::MutexLock lock(&mu_);
    sessions_.erase(managed->name_);
    return saved.status();
  }
  return managed;
}

std::vector<std::string> SessionManager::Snapshots() const {
  std::vector<std::string> names;
  if (options_.data_dir.empty()) return names;
  absl::StatusOr<std::vector<std::string>> entries =
      options_.env->ListDir(options_.data_dir + "/snapshots");
  if (!entries.ok()) return names;
  for (const std::string& name : *entries) {
    if (ValidateName(name, "").ok() && options_.env->Exists(SnapshotDir(name) + "/" + kStateDir)) {
      names.push_back(name);
    }
  }
  return names;
}

// --- DocumentIngest ---------------------------------------------------------

DocumentIngest::DocumentIngest(SessionManager* manager, std::shared_ptr<ManagedSession> session,
                               WriterLock lock, std::string document, DocumentState state,
                               int64_t skip, bool add_bos, bool exists)
    : manager_(manager),
      session_(std::move(session)),
      lock_(std::move(lock)),
      document_(std::move(document)),
      state_(state),
      kind_known_(state.offset > 0 || state.tokens > 0),
      skip_(skip),
      add_bos_(add_bos),
      exists_(exists) {}

absl::StatusOr<std::unique_ptr<DocumentIngest>> DocumentIngest::Open(
    SessionManager* manager, const IngestOpenOptions& options) {
  FOT_ASSIGN_OR_RETURN(std::shared_ptr<ManagedSession> session, manager->Get(options.session));
  const std::string& name = options.document;
  if (name.empty() || name.size() > kMaxDocumentName || !ValidateUtf8(name, false).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a document id must be 1 to ", kMaxDocumentName, " bytes of UTF-8"));
  }
  if (options.offset < 0) return absl::InvalidArgumentError("offset must be >= 0");
  FOT_ASSIGN_OR_RETURN(WriterLock lock,
                       WriterLock::Acquire(session, manager->options().writer_wait));
  auto info = session->session().Document(name);
  const bool exists = info.ok();
  bool known;
  DocumentState state;
  {
    absl::MutexLock l(&session->mu_);
    known = exists || session->documents_.count(name) > 0;
  }
  if (known) state = session->Document(name);
  if (known && !options.resume) {
    return absl::AlreadyExistsError(
        absl::StrCat("document '", name, "' already exists in session '", options.session,
                     "'; set resume to continue it, or delete it and use another id"));
  }
  if (exists && !state.complete) {
    if (info->deleted) {
      return absl::FailedPreconditionError(
          absl::StrCat("document '", name, "' was deleted; it cannot be resumed"));
    }
    if (state.tokens != info->tokens) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document '", name, "' cannot be resumed: the server does not know where its ",
          state.text ? "text" : "token ids", " stand (", info->tokens, " tokens in the session)"));
    }
    const std::vector<DocumentInfo> all = session->session().Documents();
    if (all.back().name != name) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document '", name, "' cannot be resumed: document '", all.back().name,
          "' was ingested after it, and a session's stream is its documents in order"));
    }
  }
  if (!known && options.offset > 0) {
    return absl::OutOfRangeError(absl::StrCat(
        "document '", name, "' is new: its data must start at offset 0, not ", options.offset));
  }
  if (options.offset > state.offset) {
    return absl::OutOfRangeError(absl::StrCat(
        "document '", name, "' holds ", state.offset, state.text ? " bytes" : " tokens",
        "; resume from offset ", state.offset, " or earlier, not ", options.offset));
  }
  std::unique_ptr<DocumentIngest> ingest(
      new DocumentIngest(manager, std::move(session), std::move(lock), name, state,
                         state.offset - options.offset, options.add_bos, exists));
  return ingest;
}

IngestAck DocumentIngest::Ack() const {
  IngestAck ack;
  const IngestProgress progress = session_->session().Progress();
  ack.document_tokens = state_.tokens;
  ack.stream_tokens = progress.stream_tokens;
  ack.committed_tokens = progress.committed_tokens;
  ack.resume_offset = session_->SavedDocument(document_).offset;
  ack.pending_bytes = text_ != nullptr ? text_->pending() : 0;
  ack.complete = session_->SavedDocument(document_).complete;
  return ack;
}

absl::Status DocumentIngest::Append(absl::Span<const int> ids) {
  if (ids.empty()) return absl::OkStatus();
  FOT_RETURN_IF_ERROR(CheckTokenIds(manager_->engine().config(), ids));
  Session& session = session_->session();
  if (!exists_) {
    FOT_RETURN_IF_ERROR(session.StartDocument(document_).status());
    exists_ = true;
  }
  FOT_ASSIGN_OR_RETURN(IngestProgress progress, session.AppendToDocument(document_, ids));
  state_.tokens = progress.document_tokens;
  return absl::OkStatus();
}

absl::StatusOr<IngestAck> DocumentIngest::Chunk(std::string_view text,
                                                absl::Span<const int> token_ids,
                                                bool end_of_document) {
  if (manager_->shutting_down()) return absl::UnavailableError("the server is shutting down");
  if (!text.empty() && !token_ids.empty()) {
    return absl::InvalidArgumentError("a chunk holds text or token ids, not both");
  }
  {
    absl::MutexLock lock(&session_->mu_);
    if (session_->deleted_) {
      return absl::NotFoundError(absl::StrCat("session '", session_->name_, "' was deleted"));
    }
  }
  // Data the server already holds (a resumed stream resending it) is skipped.
  const int64_t size =
      text.empty() ? static_cast<int64_t>(token_ids.size()) : static_cast<int64_t>(text.size());
  const int64_t drop = std::min(skip_, size);
  skip_ -= drop;
  if (!text.empty()) {
    text.remove_prefix(drop);
  } else {
    token_ids.remove_prefix(drop);
  }
  if (state_.complete) {
    if (!text.empty() || !token_ids.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("document '", document_, "' is complete; it cannot grow"));
    }
    return Ack();
  }
  if (end_of_document && skip_ > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the document ends at offset ", state_.offset - skip_,
                     " but the server already holds ", state_.offset));
  }
  const bool is_text = !text.empty();
  if (!text.empty() || !token_ids.empty()) {
    if (kind_known_ && state_.text != is_text) {
      return absl::InvalidArgumentError(
          absl::StrCat("document '", document_, "' is sent as ", state_.text ? "text" : "token ids",
                       "; a chunk cannot switch to ", is_text ? "text" : "token ids"));
    }
    state_.text = is_text;
    kind_known_ = true;
  }
  absl::ReleasableMutexLock append(&session_->append_mu_);
  if (state_.text) {
    if (text_ == nullptr) {
      text_ = std::make_unique<DocumentTokenizer>(&manager_->tokenizer(), state_.offset);
    }
    std::vector<int> ids;
    FOT_RETURN_IF_ERROR(text_->Feed(text, end_of_document, &ids));
    if (text_->pending() > manager_->options().max_pending_text_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "document '", document_, "' has more than ", manager_->options().max_pending_text_bytes,
          " bytes without a space to cut at; send it as token ids"));
    }
    const int bos = manager_->tokenizer().bos_id();
    if (add_bos_ && state_.offset == 0 && state_.tokens == 0 && !ids.empty() && bos >= 0) {
      ids.insert(ids.begin(), bos);
    }
    FOT_RETURN_IF_ERROR(Append(ids));
    state_.offset = text_->consumed();
  } else {
    FOT_RETURN_IF_ERROR(Append(token_ids));
    state_.offset += static_cast<int64_t>(token_ids.size());
  }
  if (end_of_document) {
    if (state_.tokens == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("document '", document_, "' is empty: it has no tokens"));
    }
    state_.complete = true;
  }
  {
    absl::MutexLock lock(&session_->mu_);
    session_->documents_[document_] = state_;
  }
  append.Release();
  FOT_RETURN_IF_ERROR(manager_->Persist(*session_, /*force=*/end_of_document).status());
  return Ack();
}

absl::StatusOr<IngestAck> DocumentIngest::Close() {
  // Only this stream changes the document (it holds the writer lock).
  if (!(session_->SavedDocument(document_) == session_->Document(document_))) {
    FOT_RETURN_IF_ERROR(manager_->Persist(*session_, /*force=*/true).status());
  }
  return Ack();
}

}  // namespace fot
