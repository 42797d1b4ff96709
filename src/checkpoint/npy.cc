#include "src/checkpoint/npy.h"

#include <sys/stat.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace fot {
namespace {

// The element data is copied to and from memory as-is.
static_assert(std::endian::native == std::endian::little, "npy.cc assumes a little-endian host");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
// A header longer than this is not something numpy writes; refusing it keeps a
// corrupt length field from causing a huge allocation.
constexpr uint32_t kMaxHeaderLen = 1u << 24;
// Total header size (preamble + dict + padding) reserved by the row writer:
// enough for any int64 row and column count.
constexpr size_t kRowWriterHeaderSize = 128;

std::string Prefix(const std::string& path) { return absl::StrCat("npy file '", path, "': "); }

absl::Status ErrnoError(const std::string& path, absl::string_view what) {
  const int err = errno;
  return absl::UnavailableError(
      absl::StrCat(Prefix(path), what, ": ", err != 0 ? std::strerror(err) : "I/O error"));
}

// Closes a FILE* on scope exit.
struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// ---------------------------------------------------------------------------
// Header dict parsing: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  // On failure returns a message (without the file prefix) saying what is wrong.
  absl::Status Parse(Header* header) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    SkipSpace();
    if (!Consume('{')) return Error("expected '{'");
    while (true) {
      SkipSpace();
      if (Consume('}')) break;
      std::string key;
      FOT_RETURN_IF_ERROR(ParseString(&key));
      SkipSpace();
      if (!Consume(':')) return Error("expected ':' after key '" + key + "'");
      SkipSpace();
      if (key == "descr") {
        if (have_descr) return Error("duplicate key 'descr'");
        have_descr = true;
        FOT_RETURN_IF_ERROR(ParseString(&header->descr));
      } else if (key == "fortran_order") {
        if (have_fortran) return Error("duplicate key 'fortran_order'");
        have_fortran = true;
        FOT_RETURN_IF_ERROR(ParseBool(&header->fortran_order));
      } else if (key == "shape") {
        if (have_shape) return Error("duplicate key 'shape'");
        have_shape = true;
        FOT_RETURN_IF_ERROR(ParseShape(&header->shape));
      } else {
        return Error("unexpected key '" + key + "'");
      }
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume('}')) break;
      return Error("expected ',' or '}'");
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after '}'");
    if (!have_descr) return Error("missing key 'descr'");
    if (!have_fortran) return Error("missing key 'fortran_order'");
    if (!have_shape) return Error("missing key 'shape'");
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed header (", what, " at offset ", pos_, " of the header dict)"));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool ConsumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }
  absl::Status ParseString(std::string* out) {
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      return Error("expected a quoted string");
    }
    const char quote = text_[pos_++];
    const size_t end = text_.find(quote, pos_);
    if (end == std::string_view::npos) return Error("unterminated string");
    out->assign(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return absl::OkStatus();
  }
  absl::Status ParseBool(bool* out) {
    if (ConsumeWord("True")) {
      *out = true;
    } else if (ConsumeWord("False")) {
      *out = false;
    } else {
      return Error("expected True or False");
    }
    return absl::OkStatus();
  }
  absl::Status ParseShape(std::vector<int64_t>* shape) {
    shape->clear();
    if (!Consume('(')) return Error("expected '(' to start the shape");
    while (true) {
      SkipSpace();
      if (Consume(')')) return absl::OkStatus();
      if (pos_ < text_.size() && text_[pos_] == '-') return Error("negative dimension in shape");
      if (pos_ >= text_.size() || text_[pos_] < '0' || text_[pos_] > '9') {
        return Error("expected a dimension in shape");
      }
      int64_t dim = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        const int digit = text_[pos_++] - '0';
        if (dim > (std::numeric_limits<int64_t>::max() - digit) / 10) {
          return Error("dimension too large in shape");
        }
        dim = dim * 10 + digit;
      }
      Consume('L');  // Python 2 longs, as old numpy wrote them
      shape->push_back(dim);
      SkipSpace();
      if (Consume(',')) continue;
      if (Consume(')')) {
        // "(5)" is not a tuple in Python: numpy never writes it.
        if (shape->size() == 1) return Error("a 1-element shape needs a trailing comma");
        return absl::OkStatus();
      }
      return Error("expected ',' or ')' in shape");
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// Returns the number of elements of `shape` times `item_size`, or an error if a
// dimension is negative or the product overflows.
absl::StatusOr<uint64_t> DataBytes(const std::string& path, const std::vector<int64_t>& shape,
                                   int item_size) {
  uint64_t total = static_cast<uint64_t>(item_size);
  bool zero = false;
  for (int64_t d : shape) {
    if (d < 0)
      return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "negative dimension ", d));
    if (d == 0) zero = true;
  }
  if (zero) return uint64_t{0};
  for (int64_t d : shape) {
    if (total >
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / static_cast<uint64_t>(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Prefix(path), "shape (", absl::StrJoin(shape, ", "), ") is too large"));
    }
    total *= static_cast<uint64_t>(d);
  }
  return total;
}

std::string ShapeTuple(const std::vector<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

// The preamble, dict and padding. With `fixed_total` > 0 the result is exactly
// that long (the caller made sure it fits); otherwise it is padded to a multiple
// of 64 bytes, using format 2.0 only if the dict is too long for 1.0.
std::string BuildHeader(const std::string& dtype, const std::vector<int64_t>& shape,
                        size_t fixed_total) {
  const std::string dict = absl::StrCat(
      "{'descr': '", dtype, "', 'fortran_order': False, 'shape': ", ShapeTuple(shape), ", }");
  size_t preamble = kMagicSize + 2 + 2;
  size_t total = fixed_total;
  if (total == 0) {
    total = (preamble + dict.size() + 1 + 63) / 64 * 64;
    if (total - preamble > 0xffff) {
      preamble = kMagicSize + 2 + 4;
      total = (preamble + dict.size() + 1 + 63) / 64 * 64;
    }
  }
  const size_t header_len = total - preamble;
  std::string out(kMagic, kMagicSize);
  out.push_back(preamble == 10 ? 1 : 2);
  out.push_back(0);
  for (size_t i = 0; i < preamble - kMagicSize - 2; ++i) {
    out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xff));
  }
  out += dict;
  out.append(header_len - dict.size() - 1, ' ');
  out.push_back('\n');
  return out;
}

// A failure of the file layer in this file's words: Unavailable, naming the
// array's file and what was being done.
absl::Status WriteError(const std::string& path, absl::string_view what,
                        const absl::Status& status) {
  if (status.ok()) return status;
  return absl::UnavailableError(absl::StrCat(Prefix(path), what, ": ", status.message()));
}

std::string_view Bytes(const void* data, size_t size) {
  return std::string_view(static_cast<const char*>(data), size);
}

}  // namespace

int64_t NpyArray::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int NpyItemSize(const std::string& dtype) {
  if (dtype == "<f4" || dtype == "<i4" || dtype == "<u4") return 4;
  if (dtype == "<f8" || dtype == "<i8" || dtype == "<u8") return 8;
  if (dtype == "<f2" || dtype == "<i2" || dtype == "<u2") return 2;
  if (dtype == "|i1" || dtype == "|u1" || dtype == "|b1") return 1;
  return 0;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  errno = 0;
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(Prefix(path), "no such file"));
    return ErrnoError(path, "cannot open for reading");
  }
  std::FILE* f = file.get();
  struct stat st;
  if (fstat(fileno(f), &st) != 0) return ErrnoError(path, "cannot stat");
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "not a regular file"));
  }
  if (std::fseek(f, 0, SEEK_END) != 0) return ErrnoError(path, "cannot seek");
  const long file_size_long = std::ftell(f);
  if (file_size_long < 0) return ErrnoError(path, "cannot tell the file size");
  const uint64_t file_size = static_cast<uint64_t>(file_size_long);
  std::rewind(f);

  // Preamble: magic, version, header length.
  unsigned char pre[12];
  if (file_size < 10 || std::fread(pre, 1, 10, f) != 10) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "too short to be a .npy file (", file_size, " bytes)"));
  }
  if (std::memcmp(pre, kMagic, kMagicSize) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "not a .npy file (bad magic string)"));
  }
  const int major = pre[6], minor = pre[7];
  uint64_t header_start;
  uint32_t header_len;
  if (major == 1) {
    header_len = pre[8] | (uint32_t{pre[9]} << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (file_size < 12 || std::fread(pre + 10, 1, 2, f) != 2) {
      return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "truncated header"));
    }
    header_len =
        pre[8] | (uint32_t{pre[9]} << 8) | (uint32_t{pre[10]} << 16) | (uint32_t{pre[11]} << 24);
    header_start = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "unsupported format version ",
                                                   major, ".", minor, " (supported: 1.0-3.0)"));
  }
  if (header_len > kMaxHeaderLen || header_start + header_len > file_size) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "truncated header (declares ",
                                                   header_len, " bytes, file has ", file_size,
                                                   ")"));
  }
  std::string header_text(header_len, '\0');
  if (header_len > 0 && std::fread(header_text.data(), 1, header_len, f) != header_len) {
    return ErrnoError(path, "cannot read the header");
  }

  Header header;
  absl::Status parsed = HeaderParser(header_text).Parse(&header);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path), parsed.message()));
  }
  if (header.fortran_order) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path),
                     "fortran_order is True; only C-order arrays are supported (save a "
                     "C-contiguous copy, e.g. np.ascontiguousarray)"));
  }
  std::string dtype = header.descr;
  if (dtype.size() == 3 && dtype[0] == '=') dtype[0] = '<';  // native order on this host
  if (dtype.size() == 3 && dtype[0] == '>' && dtype[2] != '1') {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "big-endian dtype '", header.descr, "' is not supported"));
  }
  if (dtype.size() == 3 && dtype[2] == '1') dtype[0] = '|';
  const int item_size = NpyItemSize(dtype);
  if (item_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "unsupported dtype '", header.descr, "'"));
  }
  FOT_ASSIGN_OR_RETURN(const uint64_t data_bytes, DataBytes(path, header.shape, item_size));
  const uint64_t available = file_size - header_start - header_len;
  if (available < data_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "truncated data: shape ", ShapeTuple(header.shape), " of ",
                     header.descr, " needs ", data_bytes, " bytes, the file has ", available));
  }
  if (available > data_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(path), available - data_bytes, " unexpected bytes after the data of shape ",
        ShapeTuple(header.shape), " (an unfinished or corrupt file?)"));
  }

  NpyArray array;
  array.dtype = std::move(dtype);
  array.shape = std::move(header.shape);
  array.bytes.resize(data_bytes);
  if (data_bytes > 0 && std::fread(array.bytes.data(), 1, data_bytes, f) != data_bytes) {
    return ErrnoError(path, "cannot read the data");
  }
  return array;
}

absl::Status WriteNpy(const std::string& path, const NpyArray& array, Env* env) {
  const int item_size = NpyItemSize(array.dtype);
  if (item_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "cannot write unsupported dtype '", array.dtype, "'"));
  }
  FOT_ASSIGN_OR_RETURN(const uint64_t data_bytes, DataBytes(path, array.shape, item_size));
  if (data_bytes != array.bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "shape ", ShapeTuple(array.shape),
                                                   " of ", array.dtype, " needs ", data_bytes,
                                                   " bytes of data, got ", array.bytes.size()));
  }
  const std::string header = BuildHeader(array.dtype, array.shape, 0);
  absl::StatusOr<std::unique_ptr<WritableFile>> file = env->NewWritableFile(path);
  if (!file.ok()) return WriteError(path, "cannot open for writing", file.status());
  FOT_RETURN_IF_ERROR(WriteError(path, "write failed", (*file)->Append(header)));
  FOT_RETURN_IF_ERROR(WriteError(path, "write failed",
                                 (*file)->Append(Bytes(array.bytes.data(), array.bytes.size()))));
  return WriteError(path, "close failed", (*file)->Close());
}

absl::StatusOr<std::vector<int32_t>> ReadNpyTokenIds(const std::string& path) {
  FOT_ASSIGN_OR_RETURN(NpyArray array, ReadNpy(path));
  if (array.shape.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "token ids must be 1-D, got shape ", ShapeTuple(array.shape)));
  }
  const bool is64 = array.dtype == "<i8";
  if (!is64 && array.dtype != "<i4") {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(path), "token ids must be int64 (<i8) or int32 (<i4), got '", array.dtype, "'"));
  }
  const int64_t n = array.shape[0];
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t v;
    if (is64) {
      std::memcpy(&v, array.bytes.data() + 8 * i, 8);
    } else {
      int32_t v32;
      std::memcpy(&v32, array.bytes.data() + 4 * i, 4);
      v = v32;
    }
    if (v < 0 || v > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(Prefix(path), "token id ", v, " at index ", i,
                                                     " is out of range [0, ",
                                                     std::numeric_limits<int32_t>::max(), "]"));
    }
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

absl::StatusOr<std::vector<float>> ReadNpyFloat32(const std::string& path,
                                                  std::vector<int64_t>* shape) {
  FOT_ASSIGN_OR_RETURN(NpyArray array, ReadNpy(path));
  const int64_t n = array.num_elements();
  std::vector<float> out(static_cast<size_t>(n));
  if (array.dtype == "<f4") {
    if (n > 0) std::memcpy(out.data(), array.bytes.data(), array.bytes.size());
  } else if (array.dtype == "<f8") {
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, array.bytes.data() + 8 * i, 8);
      out[i] = static_cast<float>(v);
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        Prefix(path), "expected float32 (<f4) or float64 (<f8) data, got '", array.dtype, "'"));
  }
  if (shape != nullptr) *shape = std::move(array.shape);
  return out;
}

absl::Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                             const float* data) {
  FOT_ASSIGN_OR_RETURN(const uint64_t data_bytes, DataBytes(path, shape, 4));
  if (data_bytes > 0 && data == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "no data given for shape ", ShapeTuple(shape)));
  }
  NpyArray array;
  array.dtype = "<f4";
  array.shape = shape;
  const auto* bytes = reinterpret_cast<const uint8_t*>(data);
  if (data_bytes > 0) array.bytes.assign(bytes, bytes + data_bytes);
  return WriteNpy(path, array);
}

absl::Status WriteNpyInt64(const std::string& path, const std::vector<int64_t>& values) {
  NpyArray array;
  array.dtype = "<i8";
  array.shape = {static_cast<int64_t>(values.size())};
  const auto* bytes = reinterpret_cast<const uint8_t*>(values.data());
  array.bytes.assign(bytes, bytes + values.size() * sizeof(int64_t));
  return WriteNpy(path, array);
}

// ---------------------------------------------------------------------------
// NpyFloat32RowWriter

NpyFloat32RowWriter::NpyFloat32RowWriter(std::string path, int64_t cols,
                                         std::unique_ptr<WritableFile> file)
    : path_(std::move(path)), cols_(cols), file_(std::move(file)) {}

NpyFloat32RowWriter::~NpyFloat32RowWriter() = default;

absl::StatusOr<std::unique_ptr<NpyFloat32RowWriter>> NpyFloat32RowWriter::Create(
    const std::string& path, int64_t cols, Env* env) {
  if (cols < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path), "row writer needs cols >= 0, got ", cols));
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> file = env->NewWritableFile(path);
  if (!file.ok()) return WriteError(path, "cannot open for writing", file.status());
  const std::string header = BuildHeader("<f4", {0, cols}, kRowWriterHeaderSize);
  FOT_RETURN_IF_ERROR(WriteError(path, "write failed", (*file)->Append(header)));
  return std::unique_ptr<NpyFloat32RowWriter>(
      new NpyFloat32RowWriter(path, cols, *std::move(file)));
}

absl::Status NpyFloat32RowWriter::Append(const float* rows, int64_t n_rows) {
  if (!error_.ok()) return error_;
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(Prefix(path_), "Append after Finish"));
  }
  if (n_rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Prefix(path_), "cannot append a negative number of rows (", n_rows, ")"));
  }
  if (n_rows == 0 || cols_ == 0) {
    rows_ += n_rows;
    return absl::OkStatus();
  }
  constexpr int64_t kMaxFloats = std::numeric_limits<int64_t>::max() / 4;
  if (n_rows > (kMaxFloats / cols_) - rows_) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path_), "too many rows"));
  }
  if (rows == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(Prefix(path_), "Append given null rows"));
  }
  absl::Status s = WriteError(path_, "write failed",
                              file_->Append(Bytes(rows, static_cast<size_t>(n_rows * cols_) * 4)));
  if (!s.ok()) {
    error_ = s;
    return s;
  }
  rows_ += n_rows;
  return absl::OkStatus();
}

absl::Status NpyFloat32RowWriter::Finish() {
  if (!error_.ok()) return error_;
  if (finished_) {
    return absl::FailedPreconditionError(absl::StrCat(Prefix(path_), "Finish called twice"));
  }
  finished_ = true;
  const std::string header = BuildHeader("<f4", {rows_, cols_}, kRowWriterHeaderSize);
  const std::unique_ptr<WritableFile> file = std::move(file_);
  absl::Status s = WriteError(path_, "cannot rewrite the header", file->WriteAt(0, header));
  if (s.ok()) s = WriteError(path_, "close failed", file->Close());
  if (!s.ok()) error_ = s;
  return s;
}

}  // namespace fot
