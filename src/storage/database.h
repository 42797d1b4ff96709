// The storage engine under the sessions: one RocksDB database per data
// directory, written with synced write batches, so that a batch is on disk
// whole (or not at all) once Write returns.
//
// Large values (memory entries' keys and values) go to BlobDB blob files,
// so that compaction moves only the small records and never rewrites the
// vectors.
//
// Errors: RocksDB's statuses become absl::Status — a full disk is
// ResourceExhausted, corruption DataLoss, other I/O errors Unavailable — with
// messages that name the operation, never a server path.
//
// Thread safety: every method may be called from any thread (RocksDB's
// guarantee); a batch is atomic with respect to concurrent readers.
#ifndef FOTSERVE_SRC_STORAGE_DATABASE_H_
#define FOTSERVE_SRC_STORAGE_DATABASE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/file_system.h"
#include "rocksdb/write_batch.h"

namespace fot {

// `what` failed with `status`, as an absl::Status (see above).
absl::Status RocksStatus(const rocksdb::Status& status, std::string_view what);

class Database {
 public:
  // Opens the database in directory `dir`, creating it if needed. Every file
  // goes through `file_system` (null: the local one), so that a test can
  // inject a failing disk.
  static absl::StatusOr<std::unique_ptr<Database>> Open(
      const std::string& dir, std::shared_ptr<rocksdb::FileSystem> file_system = nullptr);
  ~Database();

  // Applies `batch` atomically and syncs the write-ahead log before returning.
  // After a failure (a full or failing disk) nothing of the batch is applied,
  // and the next Write first resumes the database, or reopens it.
  [[nodiscard]] absl::Status Write(rocksdb::WriteBatch* batch);

  // The value of `key`, or nullopt if it has none.
  absl::StatusOr<std::optional<std::string>> Get(std::string_view key) const;

  // Calls visit(key, value) for every key starting with `prefix`, in key
  // order, until visit returns an error (which Scan returns).
  [[nodiscard]] absl::Status Scan(
      std::string_view prefix,
      const std::function<absl::Status(std::string_view key, std::string_view value)>& visit) const;

  // Bytes the database's files take on disk (live SST and blob files).
  int64_t DiskBytes() const;

 private:
  Database(std::string dir, std::unique_ptr<rocksdb::Env> env)
      : dir_(std::move(dir)), env_(std::move(env)) {}
  // Resumes RocksDB after a failed write, or reopens it when it cannot
  // resume (an I/O error in its log).
  absl::Status Recover() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const std::unique_ptr<rocksdb::Env> env_;  // wraps the file system; outlives db_
  // Shared by every read and write; exclusive while Recover replaces db_.
  mutable absl::Mutex mu_;
  std::unique_ptr<rocksdb::DB> db_ ABSL_GUARDED_BY(mu_);  // null if a reopen failed
  // A failed write stops RocksDB's writes until it recovers: the next write
  // tries (the disk may work, or have room, again).
  std::atomic<bool> failed_{false};
};

}  // namespace fot

#endif  // FOTSERVE_SRC_STORAGE_DATABASE_H_
