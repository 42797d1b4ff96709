// A RocksDB file system whose Nth write operation (append, flush, sync,
// close of a file being written) fails with a given error: the storage
// engine's twin of tests/base/faulty_env.h.
//
// Thread safety: the counter is atomic; RocksDB's background threads may
// write through it.
#ifndef FOTSERVE_TESTS_SRC_STORAGE_FAULTY_FILE_SYSTEM_H_
#define FOTSERVE_TESTS_SRC_STORAGE_FAULTY_FILE_SYSTEM_H_

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/file_system.h"
#include "rocksdb/io_status.h"

namespace fot {

class FaultyFileSystem : public rocksdb::FileSystemWrapper {
 public:
  // Fails operation `fail_at` (1-based; 0: none) with ENOSPC (`no_space`) or
  // EIO, and every later one too when `stays_failed` (a disk that stays full).
  FaultyFileSystem(int fail_at, bool no_space, bool stays_failed)
      : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()),
        fail_at_(fail_at),
        no_space_(no_space),
        stays_failed_(stays_failed) {}

  const char* Name() const override { return "FaultyFileSystem"; }
  int operations() const { return operations_; }
  bool failed() const { return fail_at_ > 0 && operations_ >= fail_at_; }

  // OK, or the injected error for this operation.
  rocksdb::IOStatus Tick() {
    const int n = ++operations_;
    if (fail_at_ == 0 || n < fail_at_ || (n > fail_at_ && !stays_failed_)) {
      return rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus error =
        no_space_ ? rocksdb::IOStatus::NoSpace("injected") : rocksdb::IOStatus::IOError("injected");
    return error;
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* debug) override {
    if (rocksdb::IOStatus s = Tick(); !s.ok()) return s;
    std::unique_ptr<rocksdb::FSWritableFile> real;
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, &real, debug);
    if (s.ok()) *file = std::make_unique<File>(std::move(real), this);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> real, FaultyFileSystem* fs)
        : rocksdb::FSWritableFileWrapper(real.get()), real_(std::move(real)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* debug) override {
      if (rocksdb::IOStatus s = fs_->Tick(); !s.ok()) return s;
      return real_->Append(data, options, debug);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* debug) override {
      if (rocksdb::IOStatus s = fs_->Tick(); !s.ok()) return s;
      return real_->Append(data, options, info, debug);
    }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* debug) override {
      if (rocksdb::IOStatus s = fs_->Tick(); !s.ok()) return s;
      return real_->Flush(options, debug);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* debug) override {
      if (rocksdb::IOStatus s = fs_->Tick(); !s.ok()) return s;
      return real_->Sync(options, debug);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* debug) override {
      if (rocksdb::IOStatus s = fs_->Tick(); !s.ok()) return s;
      return real_->Fsync(options, debug);
    }

   private:
    std::unique_ptr<rocksdb::FSWritableFile> real_;
    FaultyFileSystem* fs_;
  };

  const int fail_at_;
  const bool no_space_;
  const bool stays_failed_;
  std::atomic<int> operations_{0};
};

}  // namespace fot

#endif  // FOTSERVE_TESTS_SRC_STORAGE_FAULTY_FILE_SYSTEM_H_
