#include "base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {
namespace {

absl::Status PosixError(const char* what, const std::string& path, int error_number) {
  return FileErrorStatus(error_number, absl::StrCat(what, " ", path));
}

// Buffers appends so that many small writes (FAISS serialises field by
// field) cost one system call per megabyte.
class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ < 0) return;
    Flush().IgnoreError();  // as fclose would; nothing is promised without Close
    ::close(fd_);
  }

  absl::Status Append(std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("append after close: ", path_));
    if (buffer_.size() + data.size() > kBufferBytes) FOT_RETURN_IF_ERROR(Flush());
    if (data.size() >= kBufferBytes) return WriteFully(data);
    buffer_.append(data);
    return absl::OkStatus();
  }

  absl::Status WriteAt(uint64_t offset, std::string_view data) override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("write after close: ", path_));
    FOT_RETURN_IF_ERROR(Flush());
    while (!data.empty()) {
      const ssize_t wrote = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return PosixError("writing", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(wrote));
      offset += static_cast<uint64_t>(wrote);
    }
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat("closed twice: ", path_));
    absl::Status status = Flush();
    if (status.ok() && ::fsync(fd_) != 0) status = PosixError("fsync of", path_, errno);
    if (::close(fd_) != 0 && status.ok()) status = PosixError("closing", path_, errno);
    fd_ = -1;
    return status;
  }

 private:
  static constexpr size_t kBufferBytes = 1 << 20;

  absl::Status Flush() {
    const std::string pending = std::move(buffer_);
    buffer_.clear();
    return WriteFully(pending);
  }

  absl::Status WriteFully(std::string_view data) {
    while (!data.empty()) {
      const ssize_t wrote = ::write(fd_, data.data(), data.size());
      if (wrote < 0) {
        if (errno == EINTR) continue;
        return PosixError("writing", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(wrote));
    }
    return absl::OkStatus();
  }

  std::string path_;
  int fd_;
  std::string buffer_;
};

class PosixEnv : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return PosixError("creating", path, errno);
    return std::make_unique<PosixWritableFile>(path, fd);
  }

  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return PosixError("opening", path, errno);
    std::string contents;
    char buffer[1 << 16];
    for (;;) {
      const ssize_t got = ::read(fd, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        const int error_number = errno;
        ::close(fd);
        return PosixError("reading", path, error_number);
      }
      if (got == 0) break;
      contents.append(buffer, static_cast<size_t>(got));
    }
    ::close(fd);
    return contents;
  }

  absl::Status CreateDirs(const std::string& path) override {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) return PosixError("creating directory", path, error.value());
    return absl::OkStatus();
  }

  absl::Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return PosixError("opening directory", path, errno);
    const int rc = ::fsync(fd);
    const int error_number = errno;
    ::close(fd);
    return rc == 0 ? absl::OkStatus() : PosixError("fsync of directory", path, error_number);
  }

  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return PosixError("renaming", absl::StrCat(from, " to ", to), errno);
    }
    return absl::OkStatus();
  }

  absl::Status Exchange(const std::string& a, const std::string& b) override {
    if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) != 0) {
      if (errno == EINVAL || errno == ENOSYS) {
        return absl::UnimplementedError(absl::StrCat("no RENAME_EXCHANGE for ", b));
      }
      return PosixError("exchanging", absl::StrCat(a, " and ", b), errno);
    }
    return absl::OkStatus();
  }

  absl::Status RemoveAll(const std::string& path) override {
    std::error_code error;
    std::filesystem::remove_all(path, error);
    if (error) return PosixError("removing", path, error.value());
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return PosixError("listing", path, errno);
    std::vector<std::string> names;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  bool Exists(const std::string& path) override {
    struct stat info;
    return ::lstat(path.c_str(), &info) == 0;
  }
};

std::string ParentOf(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

absl::Status FileErrorStatus(int error_number, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(error_number));
  switch (error_number) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOENT:
      return absl::NotFoundError(message);
    default:
      return absl::InternalError(message);
  }
}

Env* Env::Default() {
  static PosixEnv* const env = new PosixEnv;
  return env;
}

namespace {

absl::Status WritePieces(Env& env, const std::string& path,
                         const std::vector<std::string_view>& pieces) {
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, env.NewWritableFile(path));
  for (std::string_view piece : pieces) FOT_RETURN_IF_ERROR(file->Append(piece));
  return file->Close();
}

}  // namespace

absl::Status WriteFile(Env& env, const std::string& path, std::string_view contents) {
  return WritePieces(env, path, {contents});
}

absl::Status WriteFileAtomically(Env& env, const std::string& path, std::string_view contents) {
  return WriteFileAtomically(env, path, std::vector<std::string_view>{contents});
}

absl::Status WriteFileAtomically(Env& env, const std::string& path,
                                 const std::vector<std::string_view>& pieces) {
  const std::string temporary = path + ".tmp";
  absl::Status status = WritePieces(env, temporary, pieces);
  if (status.ok()) status = env.Rename(temporary, path);
  if (!status.ok()) {
    env.RemoveAll(temporary).IgnoreError();  // best effort: the error to report is `status`
    return status;
  }
  return env.SyncDir(ParentOf(path));
}

absl::StatusOr<std::string> MakeStagingDirectory(Env& env, const std::string& target) {
  const std::string staging = target + ".saving";
  FOT_RETURN_IF_ERROR(env.RemoveAll(staging));
  FOT_RETURN_IF_ERROR(env.CreateDirs(staging));
  return staging;
}

absl::Status ReplaceDirectory(Env& env, const std::string& staging, const std::string& target) {
  absl::Status swapped = env.SyncDir(staging);
  if (swapped.ok()) {
    if (!env.Exists(target)) {
      swapped = env.Rename(staging, target);
    } else {
      swapped = env.Exchange(staging, target);
      if (absl::IsUnimplemented(swapped)) {
        // Two renames: a crash between them leaves `target` missing and its
        // previous contents complete in `target`.old.
        const std::string old = target + ".old";
        swapped = env.RemoveAll(old);
        if (swapped.ok()) swapped = env.Rename(target, old);
        if (swapped.ok()) swapped = env.Rename(staging, target);
        if (!swapped.ok() && !env.Exists(target)) env.Rename(old, target).IgnoreError();
        if (swapped.ok()) swapped = env.RemoveAll(old);
      }
    }
  }
  // After an exchange `staging` holds the previous target; otherwise the
  // failed attempt. Either way it goes.
  const absl::Status removed = env.RemoveAll(staging);
  FOT_RETURN_IF_ERROR(swapped);
  FOT_RETURN_IF_ERROR(env.SyncDir(ParentOf(target)));
  return removed;
}

}  // namespace fot
