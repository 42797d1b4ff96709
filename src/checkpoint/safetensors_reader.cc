#include "src/checkpoint/safetensors_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

using Json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

std::string Dump(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

absl::Status Corrupt(const std::string& file, const std::string& what) {
  return absl::DataLossError(absl::StrCat(file, ": ", what));
}

absl::Status BadTensor(const std::string& file, const std::string& tensor,
                       const std::string& what) {
  return absl::DataLossError(absl::StrCat(file, ": tensor '", tensor, "': ", what));
}

// A non-negative JSON integer, as uint64.
bool AsCount(const Json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
    return true;
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(value.get<int64_t>());
    return true;
  }
  return false;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  return text.str();
}

}  // namespace

// One file mapped read-only. The mapping lives until destruction.
class SafetensorsCheckpoint::MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      std::string message = absl::StrCat(path, ": cannot open: ", std::strerror(err));
      return err == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
    }
    auto file = std::unique_ptr<MappedFile>(new MappedFile(path, static_cast<size_t>(st.st_size)));
    if (file->size_ > 0) {
      void* addr = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        return absl::ResourceExhaustedError(
            absl::StrCat(path, ": cannot map ", file->size_, " bytes: ", std::strerror(err)));
      }
      file->data_ = static_cast<const uint8_t*>(addr);
    }
    ::close(fd);  // the mapping keeps the file alive
    return file;
  }

  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, size_t size) : path_(std::move(path)), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace {

// Parses and checks the header of one mapped safetensors file.
absl::Status ParseSafetensors(const std::string& path, const uint8_t* data, size_t size,
                              std::map<std::string, TensorInfo, std::less<>>* tensors,
                              std::map<std::string, std::string>* metadata) {
  if (size < 8) {
    return Corrupt(path, absl::StrCat("file is ", size,
                                      " bytes, too short for a safetensors header "
                                      "(at least 8 bytes)"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];  // little-endian
  if (header_len > size - 8) {
    return Corrupt(
        path, absl::StrCat("header length ", header_len, " bytes runs past the end of the file (",
                           size, " bytes); truncated or not a safetensors file"));
  }
  const char* header_begin = reinterpret_cast<const char*>(data + 8);
  Json header;
  try {
    header = Json::parse(header_begin, header_begin + header_len);
  } catch (const Json::exception& e) {
    return Corrupt(path, absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) {
    return Corrupt(path,
                   absl::StrCat("header is not a JSON object (got ", header.type_name(), ")"));
  }
  const uint8_t* payload = data + 8 + header_len;
  const uint64_t payload_size = size - 8 - header_len;

  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return Corrupt(path, "__metadata__ is not a JSON object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(path,
                         absl::StrCat("__metadata__ value for '", m.key(), "' is not a string"));
        }
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) return BadTensor(path, name, "entry is not a JSON object");
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) return BadTensor(path, name, absl::StrCat("missing '", key, "'"));
    }
    const Json& dtype_json = entry["dtype"];
    if (!dtype_json.is_string()) {
      return BadTensor(path, name, absl::StrCat("dtype is not a string: ", Dump(dtype_json)));
    }
    absl::StatusOr<DType> dtype = ParseDType(dtype_json.get<std::string>());
    if (!dtype.ok()) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": tensor '", name, "': ", dtype.status().message()));
    }
    const Json& shape_json = entry["shape"];
    if (!shape_json.is_array()) {
      return BadTensor(path, name, absl::StrCat("shape is not a list: ", Dump(shape_json)));
    }
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    info.file = path;
    uint64_t expected_bytes = DTypeSize(*dtype);
    bool overflow = false;
    for (const Json& dim_json : shape_json) {
      uint64_t dim = 0;
      if (!AsCount(dim_json, &dim) ||
          dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return BadTensor(path, name,
                         absl::StrCat("shape must hold non-negative integers: ", Dump(shape_json)));
      }
      info.shape.push_back(static_cast<int64_t>(dim));
      overflow = overflow || __builtin_mul_overflow(expected_bytes, dim, &expected_bytes);
    }
    const Json& offsets = entry["data_offsets"];
    uint64_t begin = 0, end = 0;
    if (!offsets.is_array() || offsets.size() != 2 || !AsCount(offsets[0], &begin) ||
        !AsCount(offsets[1], &end)) {
      return BadTensor(path, name,
                       absl::StrCat("data_offsets must be two non-negative integers [begin, end], "
                                    "got ",
                                    Dump(offsets)));
    }
    if (begin > end) {
      return BadTensor(path, name,
                       absl::StrCat("data_offsets [", begin, ", ", end, "] have begin > end"));
    }
    if (end > payload_size) {
      return BadTensor(
          path, name,
          absl::StrCat("data_offsets [", begin, ", ", end, "] run past the end of the data (",
                       payload_size, " bytes after the header); file truncated?"));
    }
    if (overflow || expected_bytes != end - begin) {
      return BadTensor(
          path, name,
          absl::StrCat("data_offsets [", begin, ", ", end, "] hold ", end - begin,
                       " bytes, but shape ", ShapeToString(info.shape), " of ", DTypeName(*dtype),
                       " needs ",
                       overflow ? std::string("more than 2^64") : absl::StrCat(expected_bytes)));
    }
    info.data = payload + begin;
    info.num_bytes = static_cast<size_t>(end - begin);
    if (begin < end) ranges.emplace_back(begin, end, name);
    (*tensors)[name] = std::move(info);
  }

  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const auto& [prev_begin, prev_end, prev_name] = ranges[i - 1];
    const auto& [begin, end, name] = ranges[i];
    if (begin < prev_end) {
      return Corrupt(
          path, absl::StrCat("tensors '", prev_name, "' [", prev_begin, ", ", prev_end, ") and '",
                             name, "' [", begin, ", ", end, ") overlap in the data section"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return absl::UnimplementedError(
      absl::StrCat("unsupported dtype '", std::string(name), "' (supported: F32, F16, BF16)"));
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

SafetensorsCheckpoint::SafetensorsCheckpoint() = default;
SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) {
    return absl::NotFoundError(absl::StrCat(model_dir,
                                            ": not a directory (expected a model "
                                            "folder with config.json and weights)"));
  }
  const std::string single = (fs::path(model_dir) / kSingleFile).string();
  const std::string index = (fs::path(model_dir) / kIndexFile).string();
  if (fs::exists(single, ec)) return OpenFile(single);
  if (fs::exists(index, ec)) return OpenIndex(index);
  return absl::NotFoundError(absl::StrCat(model_dir, ": no weights: neither ", kSingleFile, " nor ",
                                          kIndexFile, " exists"));
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenFile(
    const std::string& path) {
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());
  checkpoint->source_ = path;
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  FOT_RETURN_IF_ERROR(ParseSafetensors(path, file->data(), file->size(), &checkpoint->tensors_,
                                       &checkpoint->metadata_));
  checkpoint->files_.push_back(std::move(file));
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenIndex(
    const std::string& index_path) {
  FOT_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path));
  Json index;
  try {
    index = Json::parse(text);
  } catch (const Json::exception& e) {
    return Corrupt(index_path, absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!index.is_object()) return Corrupt(index_path, "not a JSON object");
  auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object()) {
    return Corrupt(index_path, "missing \"weight_map\" object (tensor name -> shard file)");
  }
  if (weight_map->empty()) return Corrupt(index_path, "\"weight_map\" is empty");

  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());
  checkpoint->source_ = index_path;
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  // Each shard is mapped and parsed once, however many tensors name it.
  std::map<std::string, std::map<std::string, TensorInfo, std::less<>>> shards;
  for (auto it = weight_map->begin(); it != weight_map->end(); ++it) {
    const std::string& tensor = it.key();
    if (!it.value().is_string()) {
      return Corrupt(index_path, absl::StrCat("weight_map entry for '", tensor,
                                              "' is not a file name: ", Dump(it.value())));
    }
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos) {
      return Corrupt(index_path, absl::StrCat("weight_map entry for '", tensor, "' names '", shard,
                                              "', which is not a file name in the model folder"));
    }
    auto shard_it = shards.find(shard);
    if (shard_it == shards.end()) {
      const std::string shard_path = (dir / shard).string();
      absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(shard_path);
      if (!file.ok()) {
        return absl::Status(file.status().code(),
                            absl::StrCat(index_path, ": shard '", shard, "' (holding '", tensor,
                                         "'): ", file.status().message()));
      }
      std::map<std::string, TensorInfo, std::less<>> shard_tensors;
      std::map<std::string, std::string> shard_metadata;
      FOT_RETURN_IF_ERROR(ParseSafetensors(shard_path, (*file)->data(), (*file)->size(),
                                           &shard_tensors, &shard_metadata));
      if (checkpoint->files_.empty()) checkpoint->metadata_ = std::move(shard_metadata);
      checkpoint->files_.push_back(*std::move(file));
      shard_it = shards.emplace(shard, std::move(shard_tensors)).first;
    }
    auto found = shard_it->second.find(tensor);
    if (found == shard_it->second.end()) {
      return Corrupt(index_path, absl::StrCat("weight_map puts tensor '", tensor, "' in shard '",
                                              shard, "', which does not contain it"));
    }
    checkpoint->tensors_[tensor] = found->second;
  }
  return checkpoint;
}

absl::StatusOr<const TensorInfo*> SafetensorsCheckpoint::Find(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat(source_, ": no tensor named '", std::string(name), "'"));
  }
  return &it->second;
}

bool SafetensorsCheckpoint::Contains(std::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

std::vector<std::string> SafetensorsCheckpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) names.push_back(name);
  return names;
}

void SafetensorsCheckpoint::ReleasePages(const TensorInfo& tensor) const {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(tensor.data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(tensor.data) + tensor.num_bytes) / page * page;
  // Advice only: a failure leaves the pages resident, which is harmless.
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

size_t SafetensorsCheckpoint::mapped_bytes() const {
  size_t total = 0;
  for (const auto& file : files_) total += file->size();
  return total;
}

}  // namespace fot
