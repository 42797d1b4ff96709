#include "src/server/session_manager.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "src/server/validation.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

// The earlier layout: sessions/<name>/{state/, ingest.json}, the same under
// snapshots/<name>/.
constexpr char kStateDir[] = "state";
constexpr char kIngestFile[] = "ingest.json";

absl::StatusOr<DocumentState> StateFromJson(const nlohmann::json& j) {
  try {
    return DocumentState{j.at("text").get<bool>(), j.at("complete").get<bool>(),
                         j.at("offset").get<int64_t>(), j.at("tokens").get<int64_t>()};
  } catch (const nlohmann::json::exception&) {
    return absl::DataLossError("ingest.json has a document of wrong types");
  }
}

// A session of the earlier layout and its ingest bookkeeping: each document
// lists the states of the last two saves; the one whose token count matches
// the saved session is its state.
absl::StatusOr<std::pair<std::unique_ptr<Session>, std::map<std::string, DocumentState>>>
LoadOldLayout(const Engine* engine, const std::string& dir) {
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                       Session::Load(engine, dir + "/" + kStateDir));
  nlohmann::json meta = nlohmann::json::object();
  if (std::ifstream in(dir + "/" + kIngestFile); in) {
    meta = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.is_object() || !meta.contains("documents") ||
        !meta["documents"].is_object()) {
      return absl::DataLossError(absl::StrCat(kIngestFile, " is damaged"));
    }
  }
  std::map<std::string, int64_t> in_session;
  for (const DocumentInfo& d : session->Documents()) in_session[d.name] = d.tokens;
  std::map<std::string, DocumentState> documents;
  const nlohmann::json listed = meta.value("documents", nlohmann::json::object());
  for (const auto& [doc, candidates] : listed.items()) {
    auto it = in_session.find(doc);
    const int64_t tokens = it == in_session.end() ? 0 : it->second;
    std::optional<DocumentState> match, last;
    for (const auto& c : candidates) {
      FOT_ASSIGN_OR_RETURN(DocumentState s, StateFromJson(c));
      if (s.tokens == tokens) match = s;  // the latest matching candidate
      last = s;
    }
    if (match.has_value()) {
      documents[doc] = *match;
    } else if (it != in_session.end() && last.has_value()) {
      last->complete = true;  // where its text stands is unknown: not resumable
      last->tokens = tokens;
      documents[doc] = *last;
    }
  }
  return std::make_pair(std::move(session), std::move(documents));
}

}  // namespace

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

DurableProgress ManagedSession::Durable() const {
  absl::MutexLock lock(&mu_);
  return durable_;
}

// --- SessionManager ---------------------------------------------------------

absl::StatusOr<std::unique_ptr<SessionManager>> SessionManager::Open(
    const Engine* engine, const Tokenizer* tokenizer, SessionManagerOptions options) {
  if (options.max_sessions < 1) return absl::InvalidArgumentError("max_sessions must be >= 1");
  FOT_RETURN_IF_ERROR(ValidateLimits(options.limits));
  if (options.limits.max_memory_bytes == 0) {
    options.limits.max_memory_bytes = DefaultMaxMemoryBytes();
  }
  std::unique_ptr<SessionManager> manager(
      new SessionManager(engine, tokenizer, std::move(options)));
  const std::string& data_dir = manager->options_.data_dir;
  if (data_dir.empty()) return manager;
  FOT_RETURN_IF_ERROR(manager->options_.env->CreateDirs(data_dir));
  FOT_ASSIGN_OR_RETURN(manager->store_, SessionStore::Open(data_dir, engine, manager->options_.env,
                                                           manager->options_.file_system));
  manager->MigrateOldLayout();
  // The remains of a delete or checkpoint that a crash interrupted.
  if (absl::Status collected = manager->store_->CollectGarbage(); !collected.ok()) {
    manager->ReportLoadError(absl::StrCat("cleaning the data directory: ", collected.message()));
  }
  FOT_ASSIGN_OR_RETURN(std::vector<std::string> names, manager->store_->SessionNames());
  {
    absl::MutexLock lock(&manager->mu_);
    manager->loading_.insert(names.begin(), names.end());
  }
  SessionManager* m = manager.get();
  manager->loader_ = std::thread([m, names] { m->LoadStored(names); });
  return manager;
}

SessionManager::~SessionManager() {
  shutting_down_ = true;  // the loader stops between sessions
  if (loader_.joinable()) loader_.join();
}

void SessionManager::ReportLoadError(const std::string& error) const {
  if (options_.on_load_error) options_.on_load_error(error);
}

void SessionManager::MigrateOldLayout() {
  Env& env = *options_.env;
  for (const bool snapshots : {false, true}) {
    const std::string root = options_.data_dir + (snapshots ? "/snapshots" : "/sessions");
    absl::StatusOr<std::vector<std::string>> entries = env.ListDir(root);
    if (!entries.ok()) continue;  // no such directory: nothing to move
    for (const std::string& name : *entries) {
      const std::string dir = root + "/" + name;
      if (!ValidateName(name, "").ok() || !env.Exists(dir + "/" + kStateDir)) continue;
      const std::string what =
          absl::StrCat(snapshots ? "snapshot '" : "session '", name, "' of the earlier layout");
      absl::StatusOr<std::pair<std::unique_ptr<Session>, std::map<std::string, DocumentState>>>
          old = absl::UnknownError("");
      try {
        old = LoadOldLayout(engine_, dir);
      } catch (const nlohmann::json::exception&) {  // a value of a wrong type in session.json
        old = absl::DataLossError("its session.json holds a value of a wrong type");
      }
      absl::Status moved = old.status();
      const bool stored = snapshots ? false : store_->HasSession(name);
      if (moved.ok() && !stored) {
        moved = store_->Import(name, *old->first, old->second, snapshots);
      }
      // Once the store holds it, the old files go (a crash before this
      // point imports it again: Import writes the whole session at once).
      if (moved.ok()) moved = env.RemoveAll(dir);
      if (!moved.ok()) {
        ReportLoadError(absl::StrCat(what, " was not moved into the storage engine (",
                                     moved.message(), "); it stays where it is"));
      }
    }
  }
}

void SessionManager::LoadStored(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    if (shutting_down_) return;
    absl::StatusOr<std::shared_ptr<ManagedSession>> managed = absl::UnknownError("");
    absl::StatusOr<LoadedSession> loaded = store_->Load(name);
    if (loaded.ok()) {
      managed = Restore(name, *std::move(loaded));
    } else {
      managed = loaded.status();
    }
    absl::MutexLock lock(&mu_);
    loading_.erase(name);
    if (managed.ok()) {
      sessions_[name] = *std::move(managed);
      continue;
    }
    const absl::StatusCode code = managed.status().code() == absl::StatusCode::kDataLoss
                                      ? absl::StatusCode::kDataLoss
                                      : absl::StatusCode::kFailedPrecondition;
    failed_[name] = absl::Status(
        code, absl::StrCat("session '", name, "' could not be loaded: ", managed.status().message(),
                           "; DeleteSession removes it"));
    ReportLoadError(std::string(failed_[name].message()));
  }
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::Restore(const std::string& name,
                                                                        LoadedSession loaded) {
  const int64_t committed = loaded.stored.committed;
  absl::StatusOr<std::unique_ptr<Session>> session =
      Session::Restore(engine_, loaded.stored, loaded.entries);
  if (!session.ok() && !loaded.stored.checkpoint_dir.empty()) {
    // The index is derived state: without a usable checkpoint it is rebuilt
    // from the records alone (slower, same session).
    ReportLoadError(absl::StrCat("session '", name, "': its memory checkpoint is unusable (",
                                 session.status().message(), "); rebuilding from its records"));
    loaded.stored.checkpoint_dir.clear();
    loaded.records.checkpoint.clear();
    loaded.records.checkpoint_entries = 0;
    session = Session::Restore(engine_, std::move(loaded.stored), loaded.entries);
  }
  FOT_RETURN_IF_ERROR(session.status());
  std::shared_ptr<ManagedSession> managed(
      new ManagedSession(name, *std::move(session), std::move(loaded.records)));
  {
    absl::MutexLock lock(&managed->mu_);
    managed->documents_ = loaded.ingest;
    managed->saved_ = loaded.ingest;
    managed->durable_ = {managed->session_->Progress().stream_tokens, committed};
  }
  FOT_RETURN_IF_ERROR(Persist(*managed));
  return managed;
}

bool SessionManager::loaded() const {
  absl::MutexLock lock(&mu_);
  return loading_.empty();
}

void SessionManager::WaitUntilLoaded() const {
  absl::MutexLock lock(&mu_, absl::Condition(this, &SessionManager::NothingLoading));
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
  FOT_RETURN_IF_ERROR(CheckSessionOptions(resolved, options_.limits));
  absl::MutexLock lock(&mu_);
  FOT_RETURN_IF_ERROR(CheckFreeSlot(name));
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(engine_, resolved));
  SessionRecords records;
  // One small synced write; the name is reserved by mu_ meanwhile.
  if (store_ != nullptr) {
    FOT_ASSIGN_OR_RETURN(records, store_->Create(name, session->options()));
  }
  std::shared_ptr<ManagedSession> managed(
      new ManagedSession(name, std::move(session), std::move(records)));
  sessions_[name] = managed;
  return managed;
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::Get(const std::string& name) const {
  if (shutting_down_) return absl::UnavailableError("the server is shutting down");
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(name);
  if (it != sessions_.end()) return it->second;
  if (loading_.count(name) > 0) {
    return absl::UnavailableError(
        absl::StrCat("session '", name, "' is still loading after a restart; retry in a moment"));
  }
  if (auto failed = failed_.find(name); failed != failed_.end()) return failed->second;
  return absl::NotFoundError(absl::StrCat("no session '", TruncateName(name), "'"));
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
    if (it != sessions_.end()) {
      session = it->second;
      sessions_.erase(it);
    } else if (failed_.erase(name) == 0) {
      if (loading_.count(name) > 0 || deleting_.count(name) > 0) {
        return absl::UnavailableError(
            absl::StrCat("session '", name, "' is loading or being deleted; retry in a moment"));
      }
      return absl::NotFoundError(absl::StrCat("no session '", TruncateName(name), "'"));
    }
    // Until its records are gone the name cannot be taken again.
    deleting_.insert(name);
  }
  absl::Status removed = absl::OkStatus();
  if (session != nullptr) {
    absl::MutexLock store(&session->store_mu_);  // after a write in progress
    absl::MutexLock lock(&session->mu_);
    session->deleted_ = true;
  }
  if (store_ != nullptr) {
    removed = store_->Delete(name);
    if (removed.code() == absl::StatusCode::kNotFound) removed = absl::OkStatus();
  }
  absl::MutexLock lock(&mu_);
  deleting_.erase(name);
  if (!removed.ok()) {
    // Still stored: it loads again at the next start, so say so.
    failed_[name] = absl::FailedPreconditionError(absl::StrCat(
        "session '", name, "' was being deleted when the storage engine failed; delete it again"));
    return absl::Status(
        removed.code(),
        absl::StrCat("session '", name, "' could not be deleted: ", removed.message()));
  }
  return absl::OkStatus();
}

absl::Status SessionManager::Persist(ManagedSession& session, bool memory) {
  absl::MutexLock store(&session.store_mu_);
  return PersistLocked(session, memory);
}

absl::Status SessionManager::PersistLocked(ManagedSession& session, bool memory) {
  {
    absl::MutexLock lock(&session.mu_);
    if (session.deleted_) {
      return absl::NotFoundError(absl::StrCat("session '", session.name_, "' was deleted"));
    }
  }
  std::map<std::string, DocumentState> documents;
  absl::StatusOr<SessionChanges> changes;
  {
    absl::MutexLock append(&session.append_mu_);
    changes = session.session_->ChangesSince(session.records_.cursor, memory);
    absl::MutexLock lock(&session.mu_);
    documents = session.documents_;
  }
  FOT_RETURN_IF_ERROR(changes.status());
  if (store_ != nullptr) {
    const auto start = std::chrono::steady_clock::now();
    const absl::Status written = store_->Write(&session.records_, *changes, documents);
    if (options_.metrics != nullptr) {
      options_.metrics->ObserveStoreWrite(SecondsSince(start), written.ok());
    }
    FOT_RETURN_IF_ERROR(written);
  } else {
    session.records_.cursor = changes->end;
  }
  {
    absl::MutexLock lock(&session.mu_);
    session.saved_ = std::move(documents);
    session.durable_.stream_tokens = changes->end.stream;
    if (changes->memory) session.durable_.committed_tokens = changes->committed;
  }
  return absl::OkStatus();
}

void SessionManager::MaybeCheckpoint(ManagedSession& session) {
  if (store_ == nullptr) return;
  uint64_t data = 0;
  int64_t entries = 0;
  const int64_t shape = session.session_->memory_index_shape();
  {
    absl::MutexLock store(&session.store_mu_);
    const SessionRecords& r = session.records_;
    if (session.checkpoint_shape_ < 0) session.checkpoint_shape_ = shape;
    const int64_t added = r.cursor.entries - r.checkpoint_entries;
    // (A small memory replays fast whatever its index.)
    const bool rebuilt = shape != session.checkpoint_shape_ && added > 0 &&
                         r.cursor.entries >= options_.checkpoint_entries;
    if (!rebuilt && added < std::max(options_.checkpoint_entries, r.checkpoint_entries / 8)) {
      return;
    }
    data = r.data;
    entries = r.cursor.entries;
  }
  // Without the store lock: acknowledgements are written meanwhile.
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> name = store_->Checkpoint(data, entries, *session.session_);
  if (options_.metrics != nullptr) {
    options_.metrics->ObserveCheckpoint(SecondsSince(start), name.ok());
  }
  if (!name.ok()) return;
  absl::MutexLock store(&session.store_mu_);
  session.records_.checkpoint = *name;
  session.records_.checkpoint_entries = entries;
  session.checkpoint_shape_ = shape;
}

absl::StatusOr<int64_t> SessionManager::SaveSnapshot(const std::string& session_name,
                                                     const std::string& snapshot, bool overwrite) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  FOT_ASSIGN_OR_RETURN(std::shared_ptr<ManagedSession> session, Get(session_name));
  if (store_ == nullptr) {
    return absl::FailedPreconditionError("the server has no data directory (--data-dir)");
  }
  if (!snapshot.empty()) FOT_RETURN_IF_ERROR(ValidateName(snapshot, "snapshot name"));
  absl::MutexLock store(&session->store_mu_);
  FOT_RETURN_IF_ERROR(PersistLocked(*session, /*memory=*/true));
  if (!snapshot.empty()) {
    FOT_ASSIGN_OR_RETURN(const SessionChanges now,
                         session->session_->ChangesSince(session->records_.cursor));
    const auto start = std::chrono::steady_clock::now();
    const absl::Status saved =
        store_->SaveSnapshot(snapshot, session->records_, now,
                             EncodeSessionOptions(session->session_->options()), overwrite);
    if (options_.metrics != nullptr) {
      options_.metrics->ObserveSnapshotSave(SecondsSince(start), saved.ok());
    }
    FOT_RETURN_IF_ERROR(saved);
  }
  return store_->DataBytes(session->records_);
}

absl::StatusOr<std::shared_ptr<ManagedSession>> SessionManager::LoadSnapshot(
    const std::string& snapshot, const std::string& session_name) {
  FOT_RETURN_IF_ERROR(CheckRunning());
  if (store_ == nullptr) {
    return absl::FailedPreconditionError("the server has no data directory (--data-dir)");
  }
  FOT_RETURN_IF_ERROR(ValidateName(snapshot, "snapshot name"));
  const std::string name = session_name.empty() ? snapshot : session_name;
  FOT_RETURN_IF_ERROR(ValidateName(name, "session name"));
  if (!store_->HasSnapshot(snapshot)) {
    return absl::NotFoundError(absl::StrCat("no snapshot '", snapshot, "'"));
  }
  if (MemoryBytes() >= options_.limits.max_memory_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server's memory is full (--max_memory_bytes=", options_.limits.max_memory_bytes,
        "); delete a session before loading one"));
  }
  {
    absl::MutexLock lock(&mu_);
    FOT_RETURN_IF_ERROR(CheckFreeSlot(name));
    loading_.insert(name);  // reserved while it loads, outside the lock
  }
  absl::StatusOr<std::shared_ptr<ManagedSession>> managed = absl::UnknownError("");
  absl::StatusOr<LoadedSession> loaded = store_->LoadSnapshot(snapshot, name);
  if (loaded.ok()) {
    managed = Restore(name, *std::move(loaded));
    if (!managed.ok()) store_->Delete(name).IgnoreError();  // the error to report is managed's
  } else {
    managed = loaded.status();
  }
  absl::MutexLock lock(&mu_);
  loading_.erase(name);
  if (managed.ok()) sessions_[name] = *managed;
  return managed;
}

absl::Status SessionManager::CheckFreeSlot(const std::string& name) const {
  if (sessions_.count(name) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("session '", name, "' already exists"));
  }
  if (loading_.count(name) > 0 || deleting_.count(name) > 0) {
    return absl::UnavailableError(
        absl::StrCat("session '", name, "' is loading or being deleted; retry in a moment"));
  }
  if (failed_.count(name) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("the data directory holds a session '", name,
                                                 "' that could not be loaded; delete it first "
                                                 "or choose another name"));
  }
  if (static_cast<int>(sessions_.size() + loading_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server holds its maximum of ", options_.max_sessions, " sessions; delete one first"));
  }
  return absl::OkStatus();
}

int64_t SessionManager::MemoryBytes() const {
  int64_t bytes = 0;
  for (const auto& session : List()) {
    bytes += session->session().Progress().stream_tokens *
             MemoryBytesPerToken(session->session(), engine_->config());
  }
  return bytes;
}

absl::Status SessionManager::CheckCapacity(const ManagedSession& managed, int64_t tokens,
                                           bool new_document) const {
  const Limits& limits = options_.limits;
  const Session& session = managed.session();
  if (new_document && static_cast<int64_t>(session.Documents().size()) >= limits.max_documents) {
    return absl::ResourceExhaustedError(
        absl::StrCat("session '", managed.name(), "' holds its maximum of ", limits.max_documents,
                     " documents (--max_documents); delete the session or use another"));
  }
  const int64_t stream = session.Progress().stream_tokens;
  if (stream + tokens > limits.max_session_tokens) {
    return absl::ResourceExhaustedError(
        absl::StrCat("session '", managed.name(), "' holds ", stream, " tokens; ", tokens,
                     " more would pass its limit of ", limits.max_session_tokens,
                     " (--max_session_tokens); continue in another session"));
  }
  const int64_t in_use = MemoryBytes();
  const int64_t more = tokens * MemoryBytesPerToken(session, engine_->config());
  if (in_use + more > limits.max_memory_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server's memory is full: its sessions take ", in_use, " bytes, and ",
                     tokens, " more tokens (", more, " bytes) would pass its limit of ",
                     limits.max_memory_bytes, " (--max_memory_bytes); delete a session first"));
  }
  return absl::OkStatus();
}

std::vector<std::string> SessionManager::Snapshots() const {
  if (store_ == nullptr) return {};
  absl::StatusOr<std::vector<std::string>> names = store_->SnapshotNames();
  return names.ok() ? *names : std::vector<std::string>{};
}

}  // namespace fot
