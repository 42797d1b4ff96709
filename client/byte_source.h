// The bytes of one document for fotctl ingest, from a file or stdin, readable
// again from any offset the server has not acknowledged yet: regular files
// seek; pipes and terminals keep the unacknowledged bytes in memory. This is
// what lets an ingest resume after a broken stream without rereading input
// that cannot be reread.
//
// Thread safety: none; one thread reads a ByteSource.
#ifndef FOTSERVE_CLIENT_BYTE_SOURCE_H_
#define FOTSERVE_CLIENT_BYTE_SOURCE_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fot::client {

class ByteSource {
 public:
  // "-" is stdin. NotFound / PermissionDenied name the path.
  static absl::StatusOr<std::unique_ptr<ByteSource>> Open(const std::string& path);
  ~ByteSource();

  const std::string& path() const { return path_; }
  // Size in bytes when known (regular files), else -1.
  int64_t size() const { return size_; }

  // Moves to byte `offset`. Backwards only as far as the last Release; forwards
  // past what was read by reading and dropping (OutOfRange if the input ends
  // first).
  [[nodiscard]] absl::Status Seek(int64_t offset);
  // Up to `n` bytes from the current offset; empty at the end.
  absl::StatusOr<std::string> Read(size_t n);
  // Bytes below `offset` will not be asked for again.
  void Release(int64_t offset);

 private:
  ByteSource(std::string path, FILE* file, bool owned, int64_t size);
  // Appends up to n bytes of the input to buffer_; returns how many.
  absl::StatusOr<size_t> Fill(size_t n);

  std::string path_;
  FILE* file_;
  bool owned_;    // fclose on destruction (not stdin)
  int64_t size_;  // -1: not seekable
  int64_t position_ = 0;
  // Non-seekable input: bytes [buffer_start_, buffer_start_ + buffer_.size()).
  std::string buffer_;
  int64_t buffer_start_ = 0;
};

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_BYTE_SOURCE_H_
