// The records of every session and snapshot of a data directory, in its
// Database (database.h): the system of record the server restarts from.
//
// A session's data (its token stream with provenance, its memory entries as
// stored, its documents, deletions, commit point and Λ state) lives under a
// data id, so that a snapshot can share it instead of copying it:
//   n/<session>                      header: data id, options, base segments
//   p/<snapshot>                     snapshot: segments, documents, commit point
//   c/<snapshot>                     the snapshot's Λ state
//   i/<data>                         every data id in use
//   d/<data>/tok/<first position>    the stream tokens one write appended
//   d/<data>/ent/<first entry>       the memory entries one write appended
//   d/<data>/doc/<document id>       a document, its deletion and ingest bookkeeping
//   d/<data>/len                     stream tokens (written with every token record)
//   d/<data>/prog                    entries and committed count (with the entries)
//   d/<data>/cache                   the Λ state a lambda stream continues from
//   d/<data>/ckpt                    the memory checkpoint in index/ it starts from
// A session loaded from a snapshot reads its first positions and entries from
// the snapshot's segments (the data of the session it was taken from, up to
// the snapshot's cut) and appends under its own data id. Records are only ever
// added beyond a cut, so a cut's data never changes; data that no session or
// snapshot reaches any more is deleted (CollectGarbage).
//
// One write of a session is one synced batch: a crash keeps all of it or
// none, and its cost is proportional to what it adds, not to the memory.
//
// FAISS indexes are derived state: a session restarts from its memory
// checkpoint (<data_dir>/index/<dir>, written by Session::WriteCheckpoint when
// enough entries have accumulated) plus the entries recorded after it.
//
// Thread safety: every method may be called from any thread; the caller
// serialises writes of one session (SessionManager's store lock).
#ifndef FOTSERVE_SRC_STORAGE_SESSION_STORE_H_
#define FOTSERVE_SRC_STORAGE_SESSION_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "base/env.h"
#include "src/engine/engine.h"
#include "src/engine/session.h"
#include "src/storage/database.h"

namespace fot {

// What the service keeps per document beyond Session's DocumentInfo.
struct DocumentState {
  bool text = true;       // offsets count bytes of text (else token ids)
  bool complete = false;  // end_of_document received
  int64_t offset = 0;     // bytes / tokens of the document in the session
  int64_t tokens = 0;     // the session's token count of the document at `offset`

  bool operator==(const DocumentState&) const = default;
};

// A part of a session's stream and memory that lives under another data id:
// positions and entries below these ends (and above the previous segment's).
struct Segment {
  uint64_t data = 0;
  int64_t stream_end = 0;
  int64_t entries_end = 0;
};

// Where a live session's records are, and how far they reach.
struct SessionRecords {
  SessionOptions options;
  uint64_t data = 0;
  std::vector<Segment> base;
  SessionCursor cursor;                         // what the records hold
  int64_t checkpoint_entries = 0;               // entries its memory checkpoint holds
  std::string checkpoint;                       // the checkpoint's directory under index/; "" none
  std::vector<DocumentInfo> documents;          // as last written
  std::map<std::string, DocumentState> ingest;  // as last written
};

// A stored session, ready for Session::Restore.
struct LoadedSession {
  StoredSession stored;
  EntrySource entries;
  std::map<std::string, DocumentState> ingest;
  SessionRecords records;
};

class SessionStore {
 public:
  // Opens <data_dir>/db (through `file_system`, null: local) and uses
  // <data_dir>/index for memory checkpoints (through `env`, not owned).
  static absl::StatusOr<std::unique_ptr<SessionStore>> Open(
      const std::string& data_dir, const Engine* engine, Env* env,
      std::shared_ptr<rocksdb::FileSystem> file_system = nullptr);

  absl::StatusOr<std::vector<std::string>> SessionNames() const;
  absl::StatusOr<std::vector<std::string>> SnapshotNames() const;
  bool HasSession(const std::string& name) const;
  bool HasSnapshot(const std::string& name) const;

  // Records a new, empty session. AlreadyExists if the name has records.
  absl::StatusOr<SessionRecords> Create(const std::string& name, const SessionOptions& options);

  // One synced batch with everything in `changes` beyond records->cursor and
  // the documents (with `ingest`) that differ from what was written; on
  // success *records reflects it.
  [[nodiscard]] absl::Status Write(SessionRecords* records, const SessionChanges& changes,
                                   const std::map<std::string, DocumentState>& ingest);

  // Writes `session`'s memory, which must hold `entries` entries, as the new
  // checkpoint of data `data` and records it (the old one is removed once the
  // new one is recorded); its directory name, for SessionRecords. Needs no
  // lock of the caller's: an acknowledgement's write goes on meanwhile.
  absl::StatusOr<std::string> Checkpoint(uint64_t data, int64_t entries, const Session& session);

  // The stored session `name`. NotFound without records; DataLoss or
  // FailedPrecondition naming what is wrong with a damaged one.
  absl::StatusOr<LoadedSession> Load(const std::string& name) const;

  // Removes the session's records (one atomic write) and then what nothing
  // else reaches.
  [[nodiscard]] absl::Status Delete(const std::string& name);

  // Records snapshot `snapshot` of a session whose records are `records`
  // (written up to `changes`): a few small records, sharing its data.
  [[nodiscard]] absl::Status SaveSnapshot(const std::string& snapshot,
                                          const SessionRecords& records,
                                          const SessionChanges& changes, const std::string& options,
                                          bool overwrite);
  // Creates session `name` from snapshot `snapshot`. NotFound, AlreadyExists.
  absl::StatusOr<LoadedSession> LoadSnapshot(const std::string& snapshot, const std::string& name);
  // Bytes on disk of everything (database and checkpoints).
  int64_t DiskBytes() const;
  // Bytes of the stream and entry records that `records` reaches.
  int64_t DataBytes(const SessionRecords& records) const;

  // Deletes data, checkpoints and records no session or snapshot reaches (the
  // remains of a delete or a checkpoint that a crash interrupted).
  [[nodiscard]] absl::Status CollectGarbage();

  // Records a session (or a snapshot) that exists outside the store, e.g. a
  // data directory of an older release being migrated: all of its records in
  // one write.
  [[nodiscard]] absl::Status Import(const std::string& name, const Session& session,
                                    const std::map<std::string, DocumentState>& ingest,
                                    bool as_snapshot);

 private:
  SessionStore(std::unique_ptr<Database> db, std::string index_dir, const Engine* engine, Env* env)
      : db_(std::move(db)), index_dir_(std::move(index_dir)), engine_(engine), env_(env) {}

  absl::StatusOr<uint64_t> NewDataId(rocksdb::WriteBatch* batch);
  absl::Status RemoveUnreached(const std::map<uint64_t, Segment>& reach,
                               const std::set<std::string>& checkpoints)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoints_mu_);
  absl::StatusOr<LoadedSession> LoadData(const std::string& header_key,
                                         const std::string& what) const;

  std::unique_ptr<Database> db_;
  const std::string index_dir_;
  const Engine* engine_;
  Env* env_;
  absl::Mutex id_mu_;  // allocation of data ids
  uint64_t next_id_ ABSL_GUARDED_BY(id_mu_) = 0;
  // Checkpoints being written, which no record names yet: garbage collection
  // (of another session) must leave them alone. Held by CollectGarbage.
  absl::Mutex checkpoints_mu_;
  std::set<std::string> writing_ ABSL_GUARDED_BY(checkpoints_mu_);
};

}  // namespace fot

#endif  // FOTSERVE_SRC_STORAGE_SESSION_STORE_H_
