// The sessions a server holds: named sessions with their options, a limit on
// how many, and their records in the data directory's storage engine
// (src/storage/session_store.h): every acknowledged ingest is on disk before
// its acknowledgement, and survives a crash. Documents stream into them
// through DocumentIngest (document_ingest.h).
//
// Knows nothing of gRPC: the service (service.h) translates requests into
// these calls and absl::Status into gRPC status codes.
//
// Data directory layout:
//   <data_dir>/db/      the RocksDB database of every session and snapshot
//   <data_dir>/index/   memory checkpoints a restart starts from
// Data directories of the earlier layout (sessions/<name>/state, snapshots/)
// are moved into the database when the server first opens them.
//
// At Open, stored sessions load in the background: until a session is ready,
// calls for it answer Unavailable ("loading; retry"). A session that cannot
// load is reported for itself (FailedPrecondition naming the problem) while
// the others serve; DeleteSession removes it.
//
// Thread safety: every method of SessionManager may be called from any
// thread. A ManagedSession is shared (std::shared_ptr) so that a query keeps
// its session alive even if the session is deleted meanwhile. A DocumentIngest
// belongs to one stream (one thread).
#ifndef FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_
#define FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/env.h"
#include "src/engine/engine.h"
#include "src/engine/session.h"
#include "src/server/limits.h"
#include "src/server/server_metrics.h"
#include "src/server/session_options.h"
#include "src/storage/session_store.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

struct SessionManagerOptions {
  std::string data_dir;       // "" keeps sessions in memory only
  Env* env = Env::Default();  // memory checkpoints and migrated files; not owned
  // The storage engine's files go through it (null: the local disk), so that
  // a test can inject a failing disk.
  std::shared_ptr<rocksdb::FileSystem> file_system;
  int max_sessions = 64;
  // What a request, a session and all sessions together may cost
  // (max_memory_bytes 0 becomes DefaultMaxMemoryBytes() at Open).
  Limits limits;
  SessionOptions defaults;  // options of sessions whose request leaves fields empty
  // A session's memory is checkpointed (a restart then replays only what came
  // after) once this many entries, and at least an eighth of those already
  // checkpointed, have been added since its last checkpoint; and after an
  // index rebuild once it holds this many (MaybeCheckpoint).
  int64_t checkpoint_entries = 32768;
  // Text of a document held back without a boundary (a run of spaces) to cut
  // at: beyond this, the ingest fails with ResourceExhausted.
  int64_t max_pending_text_bytes = 1 << 20;
  // How long an ingest (or a kept turn) waits for another ingest stream of the
  // same session to end before failing with Aborted.
  absl::Duration writer_wait = absl::Seconds(10);
  // Called for each stored session that cannot be loaded or migrated, with
  // the reason: from the loading thread, before the session stops counting
  // as loading; it must not call the manager.
  std::function<void(const std::string& error)> on_load_error;
  // Where the server counts its requests, tokens, streams and writes
  // (server_metrics.h): the front ends, the ingest streams and the manager's
  // own writes reach it here. Not owned; null: nothing is counted.
  ServerMetrics* metrics = nullptr;
};

// What an acknowledgement may report: the counts the storage engine holds.
struct DurableProgress {
  int64_t stream_tokens = 0;
  int64_t committed_tokens = 0;
};

class SessionManager;

class ManagedSession {
 public:
  const std::string& name() const { return name_; }
  Session& session() const { return *session_; }

  // The ingest state of `document`; for documents the service did not ingest
  // (kept turns) a complete token document.
  DocumentState Document(const std::string& document) const;
  // The durable (acknowledgeable) state of `document`.
  DocumentState SavedDocument(const std::string& document) const;
  DurableProgress Durable() const;

 private:
  friend class SessionManager;
  friend class DocumentIngest;
  friend class WriterLock;

  ManagedSession(std::string name, std::unique_ptr<Session> session, SessionRecords records)
      : name_(std::move(name)), session_(std::move(session)), records_(std::move(records)) {}

  const std::string name_;
  const std::unique_ptr<Session> session_;

  // One write to the storage engine at a time, in order.
  absl::Mutex store_mu_ ABSL_ACQUIRED_BEFORE(append_mu_);
  SessionRecords records_ ABSL_GUARDED_BY(store_mu_);
  // Session::memory_index_shape when its last checkpoint was taken (or when
  // it was first asked); -1 before.
  int64_t checkpoint_shape_ ABSL_GUARDED_BY(store_mu_) = -1;
  // Held while tokens join the session and documents_ follows, and while a
  // write reads both, so that a write never pairs a stream with other offsets.
  absl::Mutex append_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  bool writer_ ABSL_GUARDED_BY(mu_) = false;   // an ingest stream or kept turn is running
  bool deleted_ ABSL_GUARDED_BY(mu_) = false;  // removed from the manager
  std::map<std::string, DocumentState> documents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DocumentState> saved_ ABSL_GUARDED_BY(mu_);
  DurableProgress durable_ ABSL_GUARDED_BY(mu_);
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
  // Opens the storage engine in options.data_dir (creating it if needed),
  // moves a data directory of the earlier layout into it, and starts loading
  // the stored sessions in the background. `engine` and `tokenizer` are not
  // owned.
  static absl::StatusOr<std::unique_ptr<SessionManager>> Open(const Engine* engine,
                                                              const Tokenizer* tokenizer,
                                                              SessionManagerOptions options);
  ~SessionManager();  // waits for the background loading to stop

  const SessionManagerOptions& options() const { return options_; }
  const Engine& engine() const { return *engine_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // AlreadyExists, ResourceExhausted (max_sessions), InvalidArgument (name or
  // options), Unavailable after Shutdown or while the name loads.
  absl::StatusOr<std::shared_ptr<ManagedSession>> Create(const std::string& name,
                                                         const SessionOptionsSpec& spec);
  // NotFound for an unknown name, Unavailable while it loads,
  // FailedPrecondition (or DataLoss) if it could not be loaded.
  absl::StatusOr<std::shared_ptr<ManagedSession>> Get(const std::string& name) const;
  std::vector<std::shared_ptr<ManagedSession>> List() const;  // sorted by name
  // Removes the session and its records (also one that could not be loaded).
  // Queries holding it finish.
  [[nodiscard]] absl::Status Delete(const std::string& name);
  int size() const;
  // Whether every stored session has loaded (or failed to), and waiting for it.
  bool loaded() const;
  void WaitUntilLoaded() const;

  // OK if `tokens` more stream tokens (in a new document when
  // `new_document`) fit `session` and the server: ResourceExhausted naming
  // max_documents, max_session_tokens or max_memory_bytes otherwise. Checked
  // before tokens are appended, so that every acknowledged token can be
  // committed to memory.
  [[nodiscard]] absl::Status CheckCapacity(const ManagedSession& session, int64_t tokens,
                                           bool new_document) const;
  // Bytes of memory that the sessions' streams take once committed
  // (MemoryBytesPerToken of each).
  int64_t MemoryBytes() const;

  // Writes everything the session holds beyond its records in one synced
  // batch; acknowledgements report only what that made durable. Without
  // `memory`, only its stream and documents: what an acknowledgement of
  // tokens needs, without waiting for a commit in progress. Without a data
  // directory it only marks the state acknowledgeable.
  [[nodiscard]] absl::Status Persist(ManagedSession& session, bool memory = true);
  // Writes a checkpoint of the session's memory when an index was rebuilt
  // since the last one and the memory holds options.checkpoint_entries (a
  // restart would redo the rebuild, the costliest step of a replay), or when
  // options.checkpoint_entries (and an eighth) have been added since the last
  // one. Only shortens restarts: what is
  // acknowledged is in the records already, so a failure (a full disk) is only
  // retried later. Commits wait meanwhile; acknowledgements do not.
  void MaybeCheckpoint(ManagedSession& session);

  // Snapshots (SaveSession / LoadSession of the API). SaveSnapshot returns the
  // bytes of stored data the snapshot reaches (shared with the session, not
  // copied).
  absl::StatusOr<int64_t> SaveSnapshot(const std::string& session, const std::string& snapshot,
                                       bool overwrite);
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

  // Moves sessions and snapshots of the earlier layout into the store.
  void MigrateOldLayout();
  // Loads the stored sessions (the loading thread).
  void LoadStored(const std::vector<std::string>& names);
  // The session `loaded` describes, with the windows that were acknowledged
  // but not committed before the stop committed and written.
  absl::StatusOr<std::shared_ptr<ManagedSession>> Restore(const std::string& name,
                                                          LoadedSession loaded);
  absl::Status PersistLocked(ManagedSession& session, bool memory)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(session.store_mu_);
  absl::Status CheckRunning() const;
  // AlreadyExists if `name` is taken, Unavailable while it loads or is being
  // deleted, ResourceExhausted if max_sessions are held.
  absl::Status CheckFreeSlot(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportLoadError(const std::string& error) const;
  bool NothingLoading() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return loading_.empty(); }

  const Engine* engine_;
  const Tokenizer* tokenizer_;
  const SessionManagerOptions options_;
  std::unique_ptr<SessionStore> store_;  // null without a data directory

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<ManagedSession>> sessions_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> loading_ ABSL_GUARDED_BY(mu_);               // stored, not ready yet
  std::set<std::string> deleting_ ABSL_GUARDED_BY(mu_);              // records being removed
  std::map<std::string, absl::Status> failed_ ABSL_GUARDED_BY(mu_);  // could not be loaded
  // Read by running queries between tokens, while they hold their session's
  // lock: an atomic, so that no lock is taken there.
  std::atomic<bool> shutting_down_{false};
  std::thread loader_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_SESSION_MANAGER_H_
