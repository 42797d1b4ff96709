// The file layer: every file the project writes goes through an Env, so that
// one place decides how bytes become durable (fsync of the file, then of its
// directory) and a test can substitute an Env whose Nth write fails.
//
// Env is the small set of primitives; the functions below it build the atomic
// replacements every writer uses, so that a reader sees either the previous
// file or directory or the new one, never a mixture, even across a crash.
//
// Errors are absl::Status from errno (FileErrorStatus) with a message naming
// the operation and the path.
//
// Thread safety: Env::Default() and its methods may be called from any
// thread. A WritableFile belongs to one thread.
#ifndef FOTSERVE_BASE_ENV_H_
#define FOTSERVE_BASE_ENV_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fot {

// The status of a failed file operation: a full disk, a quota or a file-size
// limit is ResourceExhausted (the operator can add room), EACCES / EPERM /
// EROFS PermissionDenied, ENOENT NotFound, anything else (EIO, …) Internal.
// The message is `what`: strerror.
absl::Status FileErrorStatus(int error_number, const std::string& what);

// A file open for writing, created empty (or truncated). Buffered: Append
// may hold bytes until Close.
class WritableFile {
 public:
  // Without Close: writes what is buffered, closes, but does not fsync.
  virtual ~WritableFile() = default;

  virtual absl::Status Append(std::string_view data) = 0;
  // Overwrites bytes already appended at `offset`: a header whose counts are
  // known only once the rest is written.
  virtual absl::Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Writes what is buffered, fsyncs and closes: the bytes are on disk once it
  // returns OK. Call once.
  virtual absl::Status Close() = 0;
};

class Env {
 public:
  virtual ~Env() = default;

  // The local filesystem. Not owned; lives as long as the process.
  static Env* Default();

  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Creates `path` and its missing parents; OK if it exists.
  virtual absl::Status CreateDirs(const std::string& path) = 0;
  // Makes the directory's entries (creations, renames) durable.
  virtual absl::Status SyncDir(const std::string& path) = 0;
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // Swaps two existing paths in one step (Linux RENAME_EXCHANGE).
  // Unimplemented where the filesystem cannot.
  virtual absl::Status Exchange(const std::string& a, const std::string& b) = 0;
  // Removes a file or a directory tree; OK if it does not exist.
  virtual absl::Status RemoveAll(const std::string& path) = 0;
  // Names of the entries of a directory (not "." or ".."), sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
};

// Writes `contents` to a new file `path` and fsyncs it; for files inside a
// staging directory, which ReplaceDirectory then makes visible at once.
absl::Status WriteFile(Env& env, const std::string& path, std::string_view contents);

// Writes `contents` to `path` through `path`.tmp: file fsynced, renamed over
// `path`, directory fsynced. On failure `path` is as it was.
absl::Status WriteFileAtomically(Env& env, const std::string& path, std::string_view contents);
// The same for a file made of `pieces`, written in order.
absl::Status WriteFileAtomically(Env& env, const std::string& path,
                                 const std::vector<std::string_view>& pieces);

// A new, empty directory beside `target` to write a replacement of it in
// (`target`.saving; a leftover from an interrupted save is removed first).
absl::StatusOr<std::string> MakeStagingDirectory(Env& env, const std::string& target);

// Puts the fully written directory `staging` in the place of `target` (which
// may not exist yet) in one step, and makes that durable: `staging` and the
// parent are fsynced, and the previous `target` is removed. On failure before
// the swap `target` is as it was; the caller's staging directory is removed.
absl::Status ReplaceDirectory(Env& env, const std::string& staging, const std::string& target);

}  // namespace fot

#endif  // FOTSERVE_BASE_ENV_H_
