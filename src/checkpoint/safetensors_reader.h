// Read-only, memory-mapped access to Hugging Face safetensors checkpoints.
//
// A checkpoint is either one file (model.safetensors) or several shards named
// by model.safetensors.index.json's "weight_map". Opening validates every
// header completely (offsets in bounds, sizes that match shapes, no overlap),
// so that a TensorInfo handed out never points outside its mapping.
//
// Ownership: a SafetensorsCheckpoint owns its mappings; TensorInfo pointers
// and their `data` stay valid until it is destroyed. After Open it is
// immutable: its const methods are safe to call from several threads at once.
#ifndef FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_READER_H_
#define FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_READER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fot {

// Element types the engine reads. Other safetensors dtypes (F64, I64, F8_*, ...)
// are rejected when the file is opened.
enum class DType { kF32, kF16, kBF16 };

size_t DTypeSize(DType dtype);       // bytes per element: 4, 2, 2
const char* DTypeName(DType dtype);  // as in safetensors headers: "F32", "F16", "BF16"
// Parses a header dtype name; error names the value and the supported ones.
absl::StatusOr<DType> ParseDType(std::string_view name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapping; little-endian, maybe unaligned
  size_t num_bytes = 0;           // == num_elements() * DTypeSize(dtype)
  std::string file;               // the .safetensors file that holds it

  int64_t num_elements() const;
};

// "[512, 64]", for error messages.
std::string ShapeToString(const std::vector<int64_t>& shape);

class SafetensorsCheckpoint {
 public:
  // Opens a Hugging Face model folder. As transformers does, model.safetensors
  // is used if present, else model.safetensors.index.json and its shards.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& model_dir);
  // Opens one .safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenFile(const std::string& path);
  // Opens a sharded checkpoint from its index file; shards are resolved
  // relative to the index's folder.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenIndex(
      const std::string& index_path);

  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;
  ~SafetensorsCheckpoint();

  // The tensor, or NotFound naming the tensor and source().
  absl::StatusOr<const TensorInfo*> Find(std::string_view name) const;
  bool Contains(std::string_view name) const;
  std::vector<std::string> TensorNames() const;  // sorted
  size_t num_tensors() const { return tensors_.size(); }

  // The file opened: the .safetensors file or the index. For messages.
  const std::string& source() const { return source_; }
  // The "__metadata__" of the file (of the first shard for an index).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Bytes of all files mapped.
  size_t mapped_bytes() const;

  // Says that this process no longer needs `tensor`'s data (one of this
  // checkpoint's): the pages it alone covers leave the resident set
  // (madvise MADV_DONTNEED; the page cache keeps them). Reading the data
  // again is still valid and faults them back in from the file. For loaders
  // that convert a tensor and never read it again.
  void ReleasePages(const TensorInfo& tensor) const;

 private:
  class MappedFile;
  SafetensorsCheckpoint();

  std::string source_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_CHECKPOINT_SAFETENSORS_READER_H_
