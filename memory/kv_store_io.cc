// KvStore::Save and KvStore::Load (kv_store.h). A saved store is a directory:
//   MANIFEST        text: format, head_dim, options, counts, and for each file
//                   its byte size and FNV-1a 64 checksum; written last.
//   index.faiss     faiss::write_index of the key index.
//   values.bin      the value array as stored (f32 / f16 / bf16, host order).
//   provenance.bin  20 bytes per entry: document i64, position i64, token i32.
//   deleted.bin     the tombstone bitmap, 64-bit words.
//   overflow.bin    ids above the reduction's norm bound, i64 ascending.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/env.h"
#include "base/status_macros.h"
#include "memory/index_check.h"
#include "memory/ivf_bounds.h"
#include "memory/kv_store.h"
#include "memory/kv_store_internal.h"

namespace fot {
namespace {

namespace fs = std::filesystem;
using kv_internal::ReadLock;
using kv_internal::StoreState;

constexpr char kMagic[] = "fotserve-kv-store 1";
constexpr char kFiles[][16] = {"index.faiss", "values.bin", "provenance.bin", "deleted.bin",
                               "overflow.bin"};
constexpr int kProvenanceBytes = 20;

struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void Add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
};

struct FileInfo {
  int64_t bytes = 0;
  uint64_t hash = 0;
};

// Prefixes a status from the file layer with what was being done.
absl::Status Annotate(const absl::Status& status, const std::string& what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), what + ": " + std::string(status.message()));
}

// A file being written: checksums what it writes, remembers the first error.
// Also the IOWriter FAISS's write_index writes through.
class FileSink : public faiss::IOWriter {
 public:
  FileSink(Env& env, const std::string& path) {
    name = path;
    absl::StatusOr<std::unique_ptr<WritableFile>> file = env.NewWritableFile(path);
    if (file.ok()) {
      file_ = std::move(*file);
    } else {
      status_ = file.status();
    }
  }
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    if (!status_.ok()) return 0;
    const size_t bytes = size * nitems;
    status_ = file_->Append(std::string_view(static_cast<const char*>(ptr), bytes));
    if (!status_.ok()) return 0;
    fnv_.Add(ptr, bytes);
    bytes_ += bytes;
    return nitems;
  }
  // Flushes, fsyncs and closes; the status of the whole file.
  absl::Status Finish(FileInfo* info) {
    if (status_.ok()) status_ = file_->Close();
    file_.reset();
    if (!status_.ok()) return Annotate(status_, "Save");
    *info = FileInfo{bytes_, fnv_.h};
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<WritableFile> file_;
  absl::Status status_;
  Fnv fnv_;
  int64_t bytes_ = 0;
};

absl::Status WriteBlob(Env& env, const std::string& path, const void* data, size_t bytes,
                       FileInfo* info) {
  FileSink sink(env, path);
  if (bytes > 0) sink(data, 1, bytes);
  return sink.Finish(info);
}

absl::Status WriteIndex(Env& env, const StoreState& st, const std::string& path, FileInfo* info) {
  FileSink sink(env, path);
  if (st.mapped_fd >= 0) {
    // Memory-mapped lists are unchanged since Load: copy the file they map
    // (write_index would write a reference to it instead of the lists).
    std::vector<char> buf(1 << 20);
    for (off_t off = 0;;) {
      const ssize_t got = pread(st.mapped_fd, buf.data(), buf.size(), off);
      if (got < 0) return FileErrorStatus(errno, "Save: re-reading the loaded index");
      if (got == 0) break;
      if (sink(buf.data(), 1, got) != static_cast<size_t>(got)) break;
      off += got;
    }
  } else {
    try {
      faiss::write_index(st.index.get(), &sink);
    } catch (const std::exception& e) {
      FOT_RETURN_IF_ERROR(sink.Finish(info));
      return kv_internal::FaissError("write_index", e);
    }
  }
  return sink.Finish(info);
}

// True for a directory a Save may replace: empty, or holding a saved store.
bool IsReplaceable(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  if (fs::is_empty(dir, ec)) return true;
  std::ifstream in(dir + "/MANIFEST");
  std::string line;
  return std::getline(in, line) && line == kMagic;
}

absl::Status ReadWholeFile(const std::string& path, std::vector<char>* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("Load: cannot open " + path + ": " + std::strerror(errno));
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) return FileErrorStatus(errno, "Load: reading " + path);
  return absl::OkStatus();
}

// Checks a file against its manifest entry; the whole content when `data`.
absl::Status VerifyFile(const std::string& path, const FileInfo& want, std::vector<char>* data) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return absl::NotFoundError("Load: " + path + " is missing: " + ec.message());
  if (static_cast<int64_t>(size) != want.bytes) {
    return absl::DataLossError("Load: " + path + " has " + std::to_string(size) +
                               " bytes, the manifest says " + std::to_string(want.bytes) +
                               " (truncated or replaced); restore the directory from a backup");
  }
  Fnv fnv;
  if (data != nullptr) {
    FOT_RETURN_IF_ERROR(ReadWholeFile(path, data));
    fnv.Add(data->data(), data->size());
  } else {
    std::ifstream in(path, std::ios::binary);
    std::vector<char> buf(1 << 20);
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) fnv.Add(buf.data(), in.gcount());
  }
  if (fnv.h != want.hash) {
    return absl::DataLossError("Load: " + path +
                               " does not match its checksum in MANIFEST (corrupt); restore the "
                               "directory from a backup");
  }
  return absl::OkStatus();
}

std::string Hex(uint64_t v) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Writes the five files and the MANIFEST of `st` into `dir`.
absl::Status WriteStoreFiles(Env& env, const StoreState& st, const std::string& dir, int head_dim,
                             const MemoryOptions& options) {
  FileInfo info[5];
  FOT_RETURN_IF_ERROR(WriteIndex(env, st, dir + "/" + kFiles[0], &info[0]));
  const bool f32 = options.dtype == StorageType::kFloat32;
  FOT_RETURN_IF_ERROR(
      WriteBlob(env, dir + "/" + kFiles[1],
                f32 ? static_cast<const void*>(st.values_f32.data()) : st.values_16.data(),
                f32 ? st.values_f32.size() * 4 : st.values_16.size() * 2, &info[1]));
  std::vector<char> prov(st.size * kProvenanceBytes);
  for (int64_t i = 0; i < st.size; ++i) {
    std::memcpy(&prov[i * kProvenanceBytes], &st.provenance[i].document, 8);
    std::memcpy(&prov[i * kProvenanceBytes + 8], &st.provenance[i].position, 8);
    std::memcpy(&prov[i * kProvenanceBytes + 16], &st.provenance[i].token, 4);
  }
  FOT_RETURN_IF_ERROR(WriteBlob(env, dir + "/" + kFiles[2], prov.data(), prov.size(), &info[2]));
  FOT_RETURN_IF_ERROR(WriteBlob(env, dir + "/" + kFiles[3], st.deleted_bits.data(),
                                st.deleted_bits.size() * 8, &info[3]));
  FOT_RETURN_IF_ERROR(WriteBlob(env, dir + "/" + kFiles[4], st.overflow_ids.data(),
                                st.overflow_ids.size() * 8, &info[4]));
  char bound[64];
  snprintf(bound, sizeof bound, "%a", st.bound_sq);
  std::string m = std::string(kMagic) + "\nhead_dim " + std::to_string(head_dim) + "\noptions " +
                  DescribeOptions(options) + "\nsize " + std::to_string(st.size) + "\ndeleted " +
                  std::to_string(st.deleted) + "\nbuilt " + (st.built ? "1" : "0") + "\nbound_sq " +
                  bound + "\n";
  for (int i = 0; i < 5; ++i) {
    m += std::string("file ") + kFiles[i] + " " + std::to_string(info[i].bytes) + " " +
         Hex(info[i].hash) + "\n";
  }
  m += "end\n";
  FileInfo unused;
  return WriteBlob(env, dir + "/MANIFEST", m.data(), m.size(), &unused);
}

}  // namespace

absl::Status KvStore::Save(const std::string& dir_in, Env* env) const {
  std::string dir = dir_in;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return absl::InvalidArgumentError("Save: empty directory name");
  if (env->Exists(dir) && !IsReplaceable(dir)) {
    return absl::FailedPreconditionError("Save: " + dir +
                                         " exists and is not a saved memory store; refusing to "
                                         "replace it (choose another directory)");
  }
  ReadLock l(&mu_);  // a consistent snapshot: writers wait, readers go on
  const StoreState& st = *state_;
  if (st.broken) {
    return absl::FailedPreconditionError("Save: the store is inconsistent after a failed Append");
  }
  absl::StatusOr<std::string> staging = MakeStagingDirectory(*env, dir);
  if (!staging.ok()) return Annotate(staging.status(), "Save");
  absl::Status s = WriteStoreFiles(*env, st, *staging, head_dim_, options_);
  if (!s.ok()) {
    env->RemoveAll(*staging).IgnoreError();  // the error to report is `s`
    return s;
  }
  return Annotate(ReplaceDirectory(*env, *staging, dir), "Save");
}

namespace {

// What a MANIFEST says.
struct Manifest {
  int head_dim = 0;
  std::string spec;
  int64_t size = -1;
  int64_t deleted = -1;
  bool built = false;
  double bound_sq = 0;
  FileInfo files[5];
};

absl::Status Corrupt(const std::string& dir, const std::string& why) {
  return absl::DataLossError("Load: " + dir + "/MANIFEST is corrupt: " + why);
}

absl::StatusOr<Manifest> ParseManifest(const std::string& dir, const std::string& text) {
  std::istringstream in(text);
  std::string line, key, bound;
  if (!std::getline(in, line) || line != kMagic) {
    return Corrupt(dir, "it does not start with '" + std::string(kMagic) + "'");
  }
  Manifest m;
  int built = 0;
  bool seen[5] = {}, ended = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    ls >> key;
    bool ok = true;
    if (key == "head_dim") {
      ok = static_cast<bool>(ls >> m.head_dim);
    } else if (key == "options") {
      ok = static_cast<bool>(ls >> m.spec);
    } else if (key == "size") {
      ok = static_cast<bool>(ls >> m.size);
    } else if (key == "deleted") {
      ok = static_cast<bool>(ls >> m.deleted);
    } else if (key == "built") {
      ok = static_cast<bool>(ls >> built);
    } else if (key == "bound_sq") {
      ok = static_cast<bool>(ls >> bound);
    } else if (key == "end") {
      ended = true;
    } else if (key == "file") {
      std::string name, hash;
      int64_t bytes = -1;
      ok = static_cast<bool>(ls >> name >> bytes >> hash) && bytes >= 0;
      int i = 0;
      while (i < 5 && name != kFiles[i]) ++i;
      ok = ok && i < 5;
      if (ok) {
        m.files[i] = FileInfo{bytes, std::strtoull(hash.c_str(), nullptr, 16)};
        seen[i] = true;
      }
    } else {
      return Corrupt(dir, "unknown line '" + line + "'");
    }
    if (!ok) return Corrupt(dir, "bad line '" + line + "'");
  }
  if (!ended) return Corrupt(dir, "it is truncated (no 'end' line)");
  for (int i = 0; i < 5; ++i) {
    if (!seen[i]) return Corrupt(dir, std::string("no entry for ") + kFiles[i]);
  }
  if (m.size < 0 || m.deleted < 0 || m.deleted > m.size) {
    return Corrupt(dir, "bad size/deleted counts");
  }
  m.built = built != 0;
  m.bound_sq = std::strtod(bound.c_str(), nullptr);
  return m;
}

// Whether values.bin, provenance.bin, deleted.bin and overflow.bin
// (data[1..4]) have the sizes `m.size` entries need. By division: the size
// comes from the MANIFEST and may be anything, the files are what they are.
bool FileSizesFit(const Manifest& m, const MemoryOptions& o, const std::vector<char> (&data)[5]) {
  const uint64_t size = static_cast<uint64_t>(m.size);  // >= 0 (ParseManifest)
  const uint64_t row = static_cast<uint64_t>(m.head_dim) * BytesPerScalar(o.dtype);  // > 0
  return data[2].size() % kProvenanceBytes == 0 && data[2].size() / kProvenanceBytes == size &&
         data[1].size() % row == 0 && data[1].size() / row == size &&
         data[3].size() == (size + 63) / 64 * 8 && data[4].size() % 8 == 0;
}

// memcpy of `bytes` bytes into a vector's storage; also for empty ones,
// whose data() may be null (memcpy's arguments must not be, even for 0).
void CopyInto(void* to, const std::vector<char>& from, size_t bytes) {
  if (bytes > 0) std::memcpy(to, from.data(), bytes);
}

// Fills the arrays of `st` from the contents of values.bin, provenance.bin,
// deleted.bin and overflow.bin (data[1..4]), checking them against `m`.
absl::Status RestoreArrays(const std::string& dir, const Manifest& m, const MemoryOptions& o,
                           std::vector<char> (&data)[5], StoreState& st) {
  if (!FileSizesFit(m, o, data)) {
    return Corrupt(dir, "file sizes do not match size=" + std::to_string(m.size));
  }
  const int64_t size = m.size;
  const int64_t words = (size + 63) / 64;
  if (o.dtype == StorageType::kFloat32) {
    st.values_f32.resize(size * m.head_dim);
    CopyInto(st.values_f32.data(), data[1], data[1].size());
  } else {
    st.values_16.resize(size * m.head_dim);
    CopyInto(st.values_16.data(), data[1], data[1].size());
  }
  st.provenance.resize(size);
  for (int64_t i = 0; i < size; ++i) {
    std::memcpy(&st.provenance[i].document, &data[2][i * kProvenanceBytes], 8);
    std::memcpy(&st.provenance[i].position, &data[2][i * kProvenanceBytes + 8], 8);
    std::memcpy(&st.provenance[i].token, &data[2][i * kProvenanceBytes + 16], 4);
  }
  st.deleted_bits.resize(words);
  CopyInto(st.deleted_bits.data(), data[3], words * 8);
  st.overflow_bits.assign(words, 0);
  st.overflow_ids.resize(data[4].size() / 8);
  CopyInto(st.overflow_ids.data(), data[4], data[4].size());
  int64_t count_deleted = 0;
  for (int64_t id = 0; id < size; ++id) {
    if (kv_internal::TestBit(st.deleted_bits, id)) {
      ++count_deleted;
    } else {
      ++st.live_per_document[st.provenance[id].document];
    }
  }
  if (count_deleted != m.deleted) return Corrupt(dir, "the tombstones disagree with 'deleted'");
  for (size_t i = 0; i < st.overflow_ids.size(); ++i) {
    const int64_t id = st.overflow_ids[i];
    if (id < 0 || id >= size || (i > 0 && id <= st.overflow_ids[i - 1])) {
      return Corrupt(dir, "overflow.bin holds a bad id");
    }
    kv_internal::SetBit(&st.overflow_bits, id);
  }
  return absl::OkStatus();
}

// Reads index.faiss into `st` and checks it is the index `m` describes.
absl::Status OpenIndex(const std::string& dir, const Manifest& m, const MemoryOptions& o,
                       StoreState& st) {
  const kv_internal::Shape shape = kv_internal::MakeShape(m.head_dim, o);
  const std::string index_path = dir + "/" + kFiles[0];
  const bool ivf = st.built && o.index_kind == IndexKind::kIvf;
  try {
    // IO_FLAG_MMAP maps the inverted lists of IVF indexes (only those).
    st.index.reset(faiss::read_index(index_path.c_str(), ivf ? faiss::IO_FLAG_MMAP : 0));
  } catch (const std::exception& e) {
    return absl::DataLossError("Load: FAISS cannot read " + index_path + ": " + e.what());
  }
  const faiss::Index* index = st.index.get();
  bool type_ok;
  if (!st.built || o.index_kind == IndexKind::kFlat) {
    type_ok = shape.fp16_keys ? dynamic_cast<const faiss::IndexScalarQuantizer*>(index) != nullptr
                              : dynamic_cast<const faiss::IndexFlatIP*>(index) != nullptr;
  } else if (auto* h = dynamic_cast<faiss::IndexHNSW*>(st.index.get())) {
    type_ok = o.index_kind == IndexKind::kHnsw;
    h->hnsw.efSearch = o.hnsw_ef_search;  // 1.7.3 ignores SearchParametersHNSW::efSearch
    // What the file says is what the store set, unless the file is not the
    // store's: later appends build with the options' beam, as before the save.
    h->hnsw.efConstruction = o.hnsw_ef_construction;
  } else {
    auto* iv = dynamic_cast<const faiss::IndexIVF*>(index);
    // (CheckLoadedIndex checks the rest, the direct map's type included.)
    type_ok =
        ivf && iv != nullptr && (o.ivf_nlist == 0 || iv->nlist == static_cast<size_t>(o.ivf_nlist));
    if (type_ok && dynamic_cast<const faiss::ArrayInvertedLists*>(iv->invlists) == nullptr) {
      st.mapped_fd = open(index_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (st.mapped_fd < 0) return FileErrorStatus(errno, "Load: opening " + index_path);
    }
  }
  const int want_dim = st.built ? shape.aug : m.head_dim;
  if (!type_ok || index->d != want_dim || index->ntotal != m.size) {
    return Corrupt(dir, "index.faiss holds a different index (d=" + std::to_string(index->d) +
                            ", ntotal=" + std::to_string(index->ntotal) +
                            ") than MANIFEST describes (" + DescribeOptions(o) + ", d=" +
                            std::to_string(want_dim) + ", size=" + std::to_string(m.size) + ")");
  }
  // Before anything reads the index through its references.
  FOT_RETURN_IF_ERROR(kv_internal::CheckLoadedIndex(*index, shape, o, st.built, index_path));
  if (ivf && !o.ivf_pq) {
    try {  // derived from the index alone, so equal to what was saved with
      st.bounds = std::make_unique<IvfBounds>(IvfBounds::Build(
          dynamic_cast<const faiss::IndexIVF&>(*index), shape.fp16_keys, m.head_dim));
    } catch (const std::exception& e) {
      return absl::DataLossError("Load: cannot read the lists of " + index_path + ": " + e.what());
    }
  }
  return absl::OkStatus();
}

// DataLoss unless every key and value of `store` is finite, as Append admits
// them: restoring a session appends a loaded memory's entries again, so a
// store that loads must be one that Append could have built (fuzz/migration
// found a session of the earlier layout with a NaN key that was moved into
// the storage engine and then failed to load from it).
absl::Status CheckFinite(const KvStore& store, const std::string& dir) {
  constexpr int64_t kRows = 4096;  // read in blocks: no copy of the whole store
  const int64_t d = store.head_dim();
  std::vector<float> keys(kRows * d), values(kRows * d);
  for (int64_t first = 0; first < store.size(); first += kRows) {
    const int64_t n = std::min(kRows, store.size() - first);
    FOT_RETURN_IF_ERROR(store.ReadKeys(first, n, keys.data()));
    FOT_RETURN_IF_ERROR(store.ReadValues(first, n, values.data()));
    for (int64_t i = 0; i < n * d; ++i) {
      if (std::isfinite(keys[i]) && std::isfinite(values[i])) continue;
      return absl::DataLossError("Load: " + dir + " holds an entry (" +
                                 std::to_string(first + i / d) +
                                 ") whose key or value is not finite; restore the directory "
                                 "from a backup");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Load(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError("Load: " + dir + " is not a directory (no saved store there)");
  }
  std::vector<char> text;
  FOT_RETURN_IF_ERROR(ReadWholeFile(dir + "/MANIFEST", &text));
  FOT_ASSIGN_OR_RETURN(const Manifest m, ParseManifest(dir, std::string(text.begin(), text.end())));
  MemoryOptions options;
  if (absl::Status s = ParseIndexSpec(m.spec, &options); !s.ok()) {
    return Corrupt(dir, std::string(s.message()));
  }
  if (absl::Status s = ValidateMemoryOptions(options, m.head_dim); !s.ok()) {
    return Corrupt(dir, std::string(s.message()));
  }
  std::unique_ptr<KvStore> store(
      new KvStore(m.head_dim, ResolveMemoryOptions(options, m.head_dim)));
  const MemoryOptions& o = store->options_;
  StoreState& st = *store->state_;  // not shared yet: no locking
  st.size = m.size;
  st.deleted = m.deleted;
  st.built = m.built || o.index_kind == IndexKind::kFlat;
  st.bound_sq = m.bound_sq;
  std::vector<char> data[5];
  for (int i = 0; i < 5; ++i) {
    FOT_RETURN_IF_ERROR(VerifyFile(dir + "/" + kFiles[i], m.files[i], i == 0 ? nullptr : &data[i]));
  }
  FOT_RETURN_IF_ERROR(RestoreArrays(dir, m, o, data, st));
  FOT_RETURN_IF_ERROR(OpenIndex(dir, m, o, st));
  FOT_RETURN_IF_ERROR(CheckFinite(*store, dir));
  return store;
}

}  // namespace fot
