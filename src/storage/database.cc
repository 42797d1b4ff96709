#include "src/storage/database.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rocksdb/env.h"
#include "rocksdb/options.h"

namespace fot {

absl::Status RocksStatus(const rocksdb::Status& status, std::string_view what) {
  if (status.ok()) return absl::OkStatus();
  // RocksDB's messages carry file paths; the client gets the kind of failure.
  const std::string client = absl::StrCat(std::string(what), " failed in the storage engine: ");
  if (status.IsNoSpace() || status.subcode() == rocksdb::Status::kSpaceLimit) {
    return absl::ResourceExhaustedError(absl::StrCat(client, "the disk is full"));
  }
  if (status.IsCorruption()) return absl::DataLossError(absl::StrCat(client, "corrupt data"));
  if (status.IsIOError()) return absl::UnavailableError(absl::StrCat(client, "an I/O error"));
  if (status.IsNotFound()) return absl::NotFoundError(absl::StrCat(client, "a file is missing"));
  return absl::InternalError(absl::StrCat(client, "error code ", static_cast<int>(status.code())));
}

namespace {

rocksdb::Options DatabaseOptions(rocksdb::Env* env) {
  rocksdb::Options options;
  if (env != nullptr) options.env = env;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  // Vectors of memory entries (a window's keys and values: kilobytes) live in
  // blob files; compaction rewrites only the small records.
  options.enable_blob_files = true;
  options.min_blob_size = 1024;
  options.enable_blob_garbage_collection = true;  // deleted sessions' vectors leave the disk
  options.blob_file_size = 64 << 20;
  options.keep_log_file_num = 4;
  options.max_manifest_file_size = 16 << 20;
  return options;
}

absl::StatusOr<std::unique_ptr<rocksdb::DB>> OpenDb(const std::string& dir, rocksdb::Env* env) {
  rocksdb::DB* db = nullptr;
  const rocksdb::Status opened = rocksdb::DB::Open(DatabaseOptions(env), dir, &db);
  if (opened.IsIOError() && opened.ToString().find("lock") != std::string::npos) {
    return absl::FailedPreconditionError(
        "the data directory is in use by another fot-server (its database is locked)");
  }
  if (!opened.ok()) return RocksStatus(opened, "opening the data directory's database");
  return std::unique_ptr<rocksdb::DB>(db);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> Database::Open(
    const std::string& dir, std::shared_ptr<rocksdb::FileSystem> file_system) {
  std::unique_ptr<rocksdb::Env> env;
  if (file_system != nullptr) env = rocksdb::NewCompositeEnv(file_system);
  std::unique_ptr<Database> database(new Database(dir, std::move(env)));
  absl::MutexLock lock(&database->mu_);
  FOT_ASSIGN_OR_RETURN(database->db_, OpenDb(dir, database->env_.get()));
  return database;
}

Database::~Database() {
  absl::MutexLock lock(&mu_);
  if (db_ != nullptr) db_->Close().PermitUncheckedError();
}

absl::Status Database::Recover() {
  if (db_->Resume().ok()) return absl::OkStatus();
  // RocksDB resumes after a full disk, not after an I/O error in its
  // write-ahead log (a fatal error to it): only reopening recovers. What was
  // synced before is in the log; what failed was never acknowledged.
  db_->Close().PermitUncheckedError();
  db_.reset();
  absl::StatusOr<std::unique_ptr<rocksdb::DB>> reopened = OpenDb(dir_, env_.get());
  if (!reopened.ok()) return reopened.status();
  db_ = *std::move(reopened);
  return absl::OkStatus();
}

absl::Status Database::Write(rocksdb::WriteBatch* batch) {
  if (failed_.load()) {
    absl::MutexLock lock(&mu_);
    if (failed_.load()) {
      FOT_RETURN_IF_ERROR(Recover());
      failed_ = false;
    }
  }
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("the storage engine could not be reopened");
  rocksdb::WriteOptions options;
  options.sync = true;
  const rocksdb::Status written = db_->Write(options, batch);
  if (!written.ok()) failed_ = true;
  return RocksStatus(written, "writing to the storage engine");
}

absl::StatusOr<std::optional<std::string>> Database::Get(std::string_view key) const {
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("the storage engine could not be reopened");
  std::string value;
  const rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return RocksStatus(s, "reading from the storage engine");
  return value;
}

absl::Status Database::Scan(
    std::string_view prefix,
    const std::function<absl::Status(std::string_view key, std::string_view value)>& visit) const {
  // (Visitors only read what they are given; none calls back into the
  // database, which this lock would not allow.)
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return absl::UnavailableError("the storage engine could not be reopened");
  rocksdb::ReadOptions options;
  std::string upper(prefix);
  // The first key after every key with this prefix (prefixes here never end
  // in 0xff bytes).
  if (!upper.empty()) ++upper.back();
  rocksdb::Slice upper_slice(upper);
  if (!upper.empty()) options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    const absl::Status visited = visit(std::string_view(it->key().data(), it->key().size()),
                                       std::string_view(it->value().data(), it->value().size()));
    if (!visited.ok()) return visited;
  }
  return RocksStatus(it->status(), "reading from the storage engine");
}

int64_t Database::DiskBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  if (db_ == nullptr) return 0;
  uint64_t sst = 0, blob = 0;
  db_->GetIntProperty(rocksdb::DB::Properties::kLiveSstFilesSize, &sst);
  db_->GetIntProperty(rocksdb::DB::Properties::kLiveBlobFileSize, &blob);
  return static_cast<int64_t>(sst + blob);
}

}  // namespace fot
