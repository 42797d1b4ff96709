#include "client/byte_source.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace fot::client {

absl::StatusOr<std::unique_ptr<ByteSource>> ByteSource::Open(const std::string& path) {
  FILE* file = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot read ", path, ": ", std::strerror(error));
    return error == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  struct stat st;
  int64_t size = -1;
  if (fstat(fileno(file), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      if (file != stdin) std::fclose(file);
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", path, ": is a directory"));
    }
    if (S_ISREG(st.st_mode)) size = st.st_size;
  }
  return std::unique_ptr<ByteSource>(
      new ByteSource(path == "-" ? "stdin" : path, file, file != stdin, size));
}

ByteSource::ByteSource(std::string path, FILE* file, bool owned, int64_t size)
    : path_(std::move(path)), file_(file), owned_(owned), size_(size) {
  // A regular file's offset may not start at 0 (stdin redirected after a read).
  if (size_ >= 0 && std::fseek(file_, 0, SEEK_SET) != 0) size_ = -1;
}

ByteSource::~ByteSource() {
  if (owned_) std::fclose(file_);
}

absl::StatusOr<size_t> ByteSource::Fill(size_t n) {
  const size_t old = buffer_.size();
  buffer_.resize(old + n);
  const size_t got = std::fread(buffer_.data() + old, 1, n, file_);
  buffer_.resize(old + got);
  if (got < n && std::ferror(file_)) {
    return absl::DataLossError(absl::StrCat("error reading ", path_, ": ", std::strerror(errno)));
  }
  return got;
}

absl::Status ByteSource::Seek(int64_t offset) {
  if (size_ >= 0) {
    if (offset > size_) {
      return absl::OutOfRangeError(absl::StrCat(path_, " has ", size_, " bytes, fewer than the ",
                                                offset, " the server already holds"));
    }
    if (std::fseek(file_, offset, SEEK_SET) != 0) {
      return absl::DataLossError(
          absl::StrCat("cannot seek in ", path_, ": ", std::strerror(errno)));
    }
    position_ = offset;
    return absl::OkStatus();
  }
  if (offset < buffer_start_) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot go back to byte ", offset, " of ", path_, " (already released)"));
  }
  while (buffer_start_ + static_cast<int64_t>(buffer_.size()) < offset) {
    const int64_t missing = offset - buffer_start_ - static_cast<int64_t>(buffer_.size());
    absl::StatusOr<size_t> got = Fill(std::min<int64_t>(missing, 1 << 20));
    if (!got.ok()) return got.status();
    if (*got == 0) {
      return absl::OutOfRangeError(absl::StrCat(path_, " has ", buffer_start_ + buffer_.size(),
                                                " bytes, fewer than the ", offset,
                                                " the server already holds"));
    }
  }
  position_ = offset;
  Release(offset);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ByteSource::Read(size_t n) {
  if (size_ >= 0) {
    std::string out(n, '\0');
    const size_t got = std::fread(out.data(), 1, n, file_);
    if (got < n && std::ferror(file_)) {
      return absl::DataLossError(absl::StrCat("error reading ", path_, ": ", std::strerror(errno)));
    }
    out.resize(got);
    position_ += got;
    return out;
  }
  const int64_t end = buffer_start_ + static_cast<int64_t>(buffer_.size());
  if (position_ + static_cast<int64_t>(n) > end) {
    absl::StatusOr<size_t> got = Fill(position_ + n - end);
    if (!got.ok()) return got.status();
  }
  const int64_t begin = position_ - buffer_start_;
  std::string out = buffer_.substr(begin, std::min<int64_t>(n, buffer_.size() - begin));
  position_ += out.size();
  return out;
}

void ByteSource::Release(int64_t offset) {
  if (size_ >= 0) return;
  offset = std::min(offset, position_);
  const int64_t drop = offset - buffer_start_;
  // Compact in large steps: erasing a string's front is linear in its size.
  if (drop <= 0 || (drop < (1 << 20) && drop * 2 < static_cast<int64_t>(buffer_.size()))) return;
  buffer_.erase(0, drop);
  buffer_start_ = offset;
}

}  // namespace fot::client
