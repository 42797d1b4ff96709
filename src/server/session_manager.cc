#include "src/server/session_manager.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "src/server/validation.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

constexpr char kStateDir[] = "state";
constexpr char kIngestFile[] = "ingest.json";

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

}  // namespace fot
