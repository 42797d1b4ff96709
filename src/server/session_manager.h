// The sessions a server holds: named sessions with their options, a limit on
// how many, and persistence in a data directory (every acknowledged ingest
// survives a restart). Documents stream into them through DocumentIngest
// (document_ingest.h).
//
// Knows nothing of gRPC: the service (service.h) translates requests into
// these calls and absl::Status into gRPC status codes.
//
// Data directory layout:
//   <data_dir>/sessions/<name>/state/        Session::Save of the live session
//   <data_dir>/sessions/<name>/ingest.json   per-document ingest bookkeeping
//   <data_dir>/snapshots/<name>/...          the same, written by SaveSnapshot
//
// Thread safety: every method of SessionManager may be called from any
// thread. A ManagedSession is shared (std::shared_ptr) so that a query keeps
// its session alive even if the session is deleted meanwhile. A DocumentIngest
// belongs to one stream (one thread).
#ifndef FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_
#define FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/env.h"
#include "src/engine/engine.h"
#include "src/engine/session.h"
#include "src/server/session_options.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

struct SessionManagerOptions {
  std::string data_dir;       // "" keeps sessions in memory only
  Env* env = Env::Default();  // every file of the data directory goes through it; not owned
  int max_sessions = 64;
  SessionOptions defaults;  // options of sessions whose request leaves fields empty
  // Minimum time between two saves of a session during an ingest stream; the
  // end of a document or of a stream always saves. 0: save at every chunk.
  // Acknowledgements report only what is saved. A save rewrites the whole
  // session (and fsyncs it), so the wait also grows to save_cost_factor times
  // the last save's duration: saving takes at most about 1 / (1 + factor) of
  // an ingest's time however large the memory. 0 turns that off.
  absl::Duration min_save_interval = absl::ZeroDuration();
  double save_cost_factor = 0;
  // Text of a document held back without a boundary (a run of spaces) to cut
  // at: beyond this, the ingest fails with ResourceExhausted.
  int64_t max_pending_text_bytes = 1 << 20;
  // How long an ingest (or a kept turn) waits for another ingest stream of the
  // same session to end before failing with Aborted.
  absl::Duration writer_wait = absl::Seconds(10);
};

// What the service keeps per document beyond Session's DocumentInfo.
struct DocumentState {
  bool text = true;       // offsets count bytes of text (else token ids)
  bool complete = false;  // end_of_document received
  int64_t offset = 0;     // bytes / tokens of the document in the session
  int64_t tokens = 0;     // the session's token count of the document at `offset`

  bool operator==(const DocumentState&) const = default;
};

class SessionManager;

class ManagedSession {
 public:
  const std::string& name() const { return name_; }
  Session& session() const { return *session_; }

  // The ingest state of `document`; for documents the service did not ingest
  // (kept turns) a complete token document.
  DocumentState Document(const std::string& document) const;
  // The saved (acknowledgeable) state of `document`.
  DocumentState SavedDocument(const std::string& document) const;

 private:
  friend class SessionManager;
  friend class DocumentIngest;
  friend class WriterLock;

  ManagedSession(std::string name, std::unique_ptr<Session> session, std::string dir)
      : name_(std::move(name)), session_(std::move(session)), dir_(std::move(dir)) {}

  const std::string name_;
  const std::unique_ptr<Session> session_;
  const std::string dir_;  // "" without a data directory

  mutable absl::Mutex mu_;
  bool writer_ ABSL_GUARDED_BY(mu_) = false;   // an ingest stream or kept turn is running
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;  // removed from the manager
  std::map<std::string, DocumentState> documents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DocumentState> saved_ ABSL_GUARDED_BY(mu_);
  absl::Time last_save_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();  // when it ended
  absl::Duration last_save_duration_ ABSL_GUARDED_BY(mu_);

  absl::Mutex save_mu_ ABSL_ACQUIRED_BEFORE(append_mu_);  // one save at a time
  // Held while tokens join the session and documents_ follows, and while a
  // save reads both, so a save never pairs a session with other offsets.
  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

// Exclusive right to change a session's stream (one ingest stream or kept
// turn at a time). Released on destruction.
class WriterLock {
 public:
  // Waits up to `wait`; Aborted if another writer holds the session that long,
  // NotFound if the session is deleted.
  static absl::StatusOr<WriterLock> Acquire(std::shared_ptr<ManagedSession> session,
                                            absl::Duration wait);
  WriterLock(WriterLock&& other) noexcept : session_(std::move(other.session_)) {}
  WriterLock& operator=(WriterLock&&) = delete;
  ~WriterLock();

 private:
  explicit WriterLock(std::shared_ptr<ManagedSession> session) : session_(std::move(session)) {}
  // The wait condition of Acquire (runs with session->mu_ held).
  static bool FreeOrDeleted(ManagedSession* session) ABSL_NO_THREAD_SAFETY_ANALYSIS;
  std::shared_ptr<ManagedSession> session_;
};

class SessionManager {
 public:
  // Loads every session saved under options.data_dir (creating the folders if
  // needed). A session that fails to load is reported in *load_errors (if not
  // null) and left on disk untouched. `engine` and `tokenizer` are not owned.
  static absl::StatusOr<std::unique_ptr<SessionManager>> Open(
      const Engine* engine, const Tokenizer* tokenizer, SessionManagerOptions options,
      std::vector<std::string>* load_errors = nullptr);

  const SessionManagerOptions& options() const { return options_; }
  const Engine& engine() const { return *engine_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // AlreadyExists, ResourceExhausted (max_sessions), InvalidArgument (name or
  // options), Unavailable after Shutdown.
  absl::StatusOr<std::shared_ptr<ManagedSession>> Create(const std::string& name,
                                                         const SessionOptionsSpec& spec);
  // NotFound for an unknown name.
  absl::StatusOr<std::shared_ptr<ManagedSession>> Get(const std::string& name) const;
  std::vector<std::shared_ptr<ManagedSession>> List() const;  // sorted by name
  // Removes the session and its saved state. Queries holding it finish.
  [[nodiscard]] absl::Status Delete(const std::string& name);
  int size() const;

  // Saves the session now if the last save is at least min_save_interval old
  // (or `force`). Returns whether it saved. Does nothing without a data dir.
  absl::StatusOr<bool> Persist(ManagedSession& session, bool force);

  // Snapshots (SaveSession / LoadSession of the API).
  absl::StatusOr<int64_t> SaveSnapshot(const std::string& session, const std::string& snapshot,
                                       bool overwrite);  // bytes on disk
  absl::StatusOr<std::shared_ptr<ManagedSession>> LoadSnapshot(const std::string& snapshot,
                                                               const std::string& session);
  std::vector<std::string> Snapshots() const;

  // After Shutdown, every call that starts work fails with Unavailable, and
  // shutting_down() tells running queries to stop.
  void Shutdown();
  bool shutting_down() const;

 private:
  SessionManager(const Engine* engine, const Tokenizer* tokenizer, SessionManagerOptions options)
      : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {}

  std::string SessionDir(const std::string& name) const;
  std::string SnapshotDir(const std::string& name) const;
  // Writes dir/ingest.json and dir/state for `session` (caller holds save_mu_).
  absl::Status SaveTo(ManagedSession& session, const std::string& dir)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(session.save_mu_);
  absl::StatusOr<std::shared_ptr<ManagedSession>> LoadFrom(const std::string& name,
                                                           const std::string& from,
                                                           const std::string& dir);
  absl::Status CheckRunning() const;
  // AlreadyExists if `name` is taken, ResourceExhausted if max_sessions are held.
  absl::Status CheckFreeSlot(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Saves a session just added to sessions_; unregisters it if that fails.
  absl::StatusOr<std::shared_ptr<ManagedSession>> PersistNew(
      std::shared_ptr<ManagedSession> managed);

  const Engine* engine_;
  const Tokenizer* tokenizer_;
  const SessionManagerOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ManagedSession>> sessions_ ABSL_GUARDED_BY(mu_);
  // Read by running queries between tokens, while they hold their session's
  // lock: an atomic, so that no lock is taken there.
  std::atomic<bool> shutting_down_{false};
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_
