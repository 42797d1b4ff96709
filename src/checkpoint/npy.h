// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
//
// Only little-endian, C-order (row-major) arrays are supported: that is what
// numpy writes on every machine this runs on, and what the golden reference
// outputs use. Every error message starts with "npy file '<path>': " and says
// what is wrong, so a bad golden file or a bad output path is easy to find.
//
// The functions are stateless and safe to call from several threads at once
// (on different files). An NpyFloat32RowWriter is not thread-safe.
#ifndef FOTSERVE_SRC_CHECKPOINT_NPY_H_
#define FOTSERVE_SRC_CHECKPOINT_NPY_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/env.h"

namespace fot {

// One array as stored in a .npy file.
struct NpyArray {
  // NumPy's type string: "<f4", "<f8", "<i4", "<i8" (and the other
  // little-endian numeric kinds "<f2", "<i2", "<u2", "<u4", "<u8", "|i1",
  // "|u1", "|b1").
  std::string dtype;
  std::vector<int64_t> shape;  // empty for a 0-d (scalar) array
  std::vector<uint8_t> bytes;  // raw element data, C order, little-endian

  // Number of elements: the product of `shape` (1 for a scalar).
  int64_t num_elements() const;
};

// Size in bytes of one element of `dtype`, or 0 if the dtype is not supported.
int NpyItemSize(const std::string& dtype);

// Reads a whole .npy file. Fails on a bad magic string, an unsupported version,
// a malformed header, a big-endian or unsupported dtype, fortran_order True,
// a negative dimension, or data shorter or longer than the header declares.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// Writes `array` to `path` (replacing any file there). The header is padded so
// the data starts at a multiple of 64 bytes, as numpy does. Fails if
// `array.bytes` does not hold exactly num_elements() items of `array.dtype`.
[[nodiscard]] absl::Status WriteNpy(const std::string& path, const NpyArray& array,
                                    Env* env = Env::Default());

// Reads a 1-D array of token ids (int64 "<i8" or int32 "<i4"). Fails on any
// other dtype or rank, and on a value that is negative or above INT32_MAX
// (the message gives its index).
absl::StatusOr<std::vector<int32_t>> ReadNpyTokenIds(const std::string& path);

// Reads a float32 array of any shape; float64 ("<f8") is converted to float32.
// `shape`, if not null, receives the array's shape.
absl::StatusOr<std::vector<float>> ReadNpyFloat32(const std::string& path,
                                                  std::vector<int64_t>* shape);

// Writes a "<f4" array of the given shape. `data` holds the product of `shape`
// floats in C order; it is not retained and may be null when that product is 0.
[[nodiscard]] absl::Status WriteNpyFloat32(const std::string& path,
                                           const std::vector<int64_t>& shape, const float* data);

// Writes a 1-D "<i8" array.
[[nodiscard]] absl::Status WriteNpyInt64(const std::string& path,
                                         const std::vector<int64_t>& values);

// Streams a float32 [rows, cols] array to disk when the number of rows is not
// known up front (e.g. logits of every generated token).
//
//   FOT_ASSIGN_OR_RETURN(auto writer, NpyFloat32RowWriter::Create(path, vocab));
//   for (...) FOT_RETURN_IF_ERROR(writer->Append(logits, 1));
//   FOT_RETURN_IF_ERROR(writer->Finish());
//
// The header is written with a fixed size (128 bytes, room for any int64 row
// count) so Finish() can rewrite it in place with the final row count. Until
// Finish() succeeds the file declares 0 rows followed by data, which ReadNpy
// rejects: an interrupted stream never passes for a complete array (one that
// fails before its first row leaves an empty [0, cols] array). After an I/O
// error every later call returns that error. Not thread-safe.
class NpyFloat32RowWriter {
 public:
  // Creates (or truncates) `path`. Fails if cols < 0 or the file cannot be
  // opened for writing.
  static absl::StatusOr<std::unique_ptr<NpyFloat32RowWriter>> Create(const std::string& path,
                                                                     int64_t cols,
                                                                     Env* env = Env::Default());

  NpyFloat32RowWriter(const NpyFloat32RowWriter&) = delete;
  NpyFloat32RowWriter& operator=(const NpyFloat32RowWriter&) = delete;
  // Closes the file. Does not call Finish(): see the class comment.
  ~NpyFloat32RowWriter();

  // Appends `n_rows` rows of `cols` floats each, read from `rows` (C order; not
  // retained; may be null when n_rows * cols is 0).
  [[nodiscard]] absl::Status Append(const float* rows, int64_t n_rows);

  // Rewrites the header with the final row count and closes the file. Later
  // calls to Append() or Finish() fail.
  [[nodiscard]] absl::Status Finish();

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

 private:
  NpyFloat32RowWriter(std::string path, int64_t cols, std::unique_ptr<WritableFile> file);

  const std::string path_;
  const int64_t cols_;
  std::unique_ptr<WritableFile> file_;  // null once finished
  int64_t rows_ = 0;
  bool finished_ = false;
  absl::Status error_;  // first I/O error, sticky
};

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_NPY_H_
