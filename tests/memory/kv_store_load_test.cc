// Loading saved stores at the edges of what KvStore::Load reads: empty
// stores, MANIFEST counts whose byte sizes overflow, keys and values that are
// not finite, FAISS indexes whose references point outside the store
// (memory/index_check.h), and memory-mapped IVF lists at misaligned offsets.
// Each loads as DataLoss or as exactly the saved store, and never crashes.
// Found by fuzz/ (kv_store, migration); ubsan_tests runs these again under
// UndefinedBehaviorSanitizer, where the undefined behaviour that the fixes
// removed fails them.
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/index_io.h>
#include <faiss/invlists/DirectMap.h>
#include <faiss/invlists/InvertedLists.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "memory/kv_store.h"
#include "memory/memory_options.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

constexpr int kDim = 8;

std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("kv_store_load_" + name);
  fs::remove_all(dir);
  return dir.string();
}

// `n` entries of deterministic keys and values, entry i in document i / 10.
std::unique_ptr<KvStore> MakeStore(const std::string& spec, int64_t n) {
  MemoryOptions options;
  EXPECT_TRUE(ParseIndexSpec(spec, &options).ok()) << spec;
  absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Create(kDim, options);
  EXPECT_TRUE(store.ok()) << store.status();
  std::vector<float> keys(n * kDim), values(n * kDim);
  for (int64_t i = 0; i < n * kDim; ++i) {
    keys[i] = std::sin(0.37f * static_cast<float>(i) + 0.1f);
    values[i] = std::cos(0.11f * static_cast<float>(i));
  }
  std::vector<Provenance> provenance(n);
  for (int64_t i = 0; i < n; ++i) provenance[i] = {i / 10, i % 10, static_cast<int32_t>(i % 97)};
  if (n > 0) {
    EXPECT_TRUE(
        (*store)->Append(keys.data(), kDim, values.data(), kDim, provenance.data(), n).ok());
  }
  return *std::move(store);
}

struct Results {
  absl::Status status;
  std::vector<int64_t> ids;
  std::vector<float> scores;
};

Results Search(const KvStore& store, int k) {
  constexpr int kQueries = 6;
  std::vector<float> queries(kQueries * kDim);
  for (size_t i = 0; i < queries.size(); ++i) queries[i] = std::cos(0.23f * i);
  Results r{absl::OkStatus(), std::vector<int64_t>(kQueries * k), std::vector<float>(kQueries * k)};
  r.status =
      store.Search(queries.data(), kQueries, kDim, k, nullptr, r.ids.data(), r.scores.data());
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The MANIFEST's checksum (kv_store_io.cc): FNV-1a, 64 bits.
std::string Fnv1a(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char b : bytes) h = (h ^ b) * 0x100000001b3ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// The MANIFEST of `dir` with every line starting with `key ` replaced by
// `line`, and the file lines' sizes and checksums those of the files as
// they are now: what a store that wrote these files would have written.
void RewriteManifest(const std::string& dir, const std::string& key = "",
                     const std::string& line = "") {
  std::istringstream in(ReadFile(dir + "/MANIFEST"));
  std::string out, l;
  while (std::getline(in, l)) {
    std::istringstream fields(l);
    std::string first, name;
    fields >> first >> name;
    if (!key.empty() && first == key) {
      l = line;
    } else if (first == "file") {
      const std::string bytes = ReadFile(dir + "/" + name);
      l = "file " + name + " " + std::to_string(bytes.size()) + " " + Fnv1a(bytes);
    }
    out += l + "\n";
  }
  WriteFile(dir + "/MANIFEST", out);
}

// Saves `store` into `dir`, lets `edit` change its index as FAISS reads
// it, writes the index back and fixes the MANIFEST's checksums.
void SaveWithEditedIndex(const KvStore& store, const std::string& dir,
                         const std::function<void(faiss::Index*)>& edit) {
  ASSERT_TRUE(store.Save(dir).ok());
  const std::string path = dir + "/index.faiss";
  std::unique_ptr<faiss::Index> index(faiss::read_index(path.c_str()));
  edit(index.get());
  faiss::write_index(index.get(), path.c_str());
  RewriteManifest(dir);
}

void ExpectInconsistentIndex(const std::string& dir) {
  const absl::Status loaded = KvStore::Load(dir).status();
  EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << loaded;
  EXPECT_NE(loaded.message().find("inconsistent index"), std::string::npos) << loaded;
}

faiss::HNSW& Graph(faiss::Index* index) { return dynamic_cast<faiss::IndexHNSW*>(index)->hnsw; }

// kHnswBuildSize (1024) entries and a few more: a built graph.
constexpr int64_t kBuiltHnsw = 1100;

TEST(KvStoreLoadTest, EmptyStoresOfEveryKindRoundTrip) {
  for (const char* spec : {"flat", "flat:dtype=f32", "flat:dtype=bf16", "hnsw", "ivf:nlist=4"}) {
    SCOPED_TRACE(spec);
    const std::unique_ptr<KvStore> store = MakeStore(spec, 0);
    const std::string dir = TempDir("empty");
    ASSERT_TRUE(store->Save(dir).ok());
    absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ((*loaded)->size(), 0);
    EXPECT_EQ(DescribeOptions((*loaded)->options()), DescribeOptions(store->options()));
    const Results found = Search(**loaded, 3);
    ASSERT_TRUE(found.status.ok()) << found.status;
    for (int64_t id : found.ids) EXPECT_EQ(id, -1);
    EXPECT_TRUE((*loaded)->Save(TempDir("empty_again")).ok());
  }
}

TEST(KvStoreLoadTest, ManifestSizesWhoseBytesOverflowAreDataLoss) {
  const std::unique_ptr<KvStore> store = MakeStore("flat:dtype=f32", 20);
  // 2^62 entries: their values, provenance and tombstone bytes overflow
  // 64 bits (to 0 for the values at head_dim 8, f32).
  for (const char* size : {"4611686018427387904", "9223372036854775807"}) {
    SCOPED_TRACE(size);
    const std::string dir = TempDir("overflow");
    ASSERT_TRUE(store->Save(dir).ok());
    RewriteManifest(dir, "size", std::string("size ") + size);
    const absl::Status loaded = KvStore::Load(dir).status();
    EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << loaded;
    EXPECT_NE(loaded.message().find("file sizes do not match"), std::string::npos) << loaded;
  }
}

TEST(KvStoreLoadTest, HnswNeighbourOutsideTheGraphIsDataLoss) {
  const std::unique_ptr<KvStore> store = MakeStore("hnsw:m=4", kBuiltHnsw);
  ASSERT_TRUE(store->index_built());
  const std::string dir = TempDir("hnsw_outside");
  SaveWithEditedIndex(*store, dir, [](faiss::Index* index) {
    Graph(index).neighbors[3] = static_cast<int>(index->ntotal) + 1000;
  });
  ExpectInconsistentIndex(dir);
}

TEST(KvStoreLoadTest, HnswLinkToANodeWithoutThatLevelIsDataLoss) {
  const std::unique_ptr<KvStore> store = MakeStore("hnsw:m=4", kBuiltHnsw);
  const std::string dir = TempDir("hnsw_level");
  bool edited = false;
  SaveWithEditedIndex(*store, dir, [&](faiss::Index* index) {
    faiss::HNSW& g = Graph(index);
    // A node of level 1 and up gets, at level 1, a link to a level-0-only
    // node; a search would read that node's level-1 slots, which are its
    // successor's (or past the end of the array).
    int64_t upper = -1, lower = -1;
    for (int64_t i = 0; i < index->ntotal; ++i) {
      if (g.levels[i] >= 2 && upper < 0) upper = i;
      if (g.levels[i] == 1) lower = i;  // the last such node
    }
    ASSERT_GE(upper, 0);
    ASSERT_GE(lower, 0);
    size_t begin, end;
    g.neighbor_range(upper, 1, &begin, &end);
    g.neighbors[begin] = static_cast<int>(lower);
    edited = true;
  });
  ASSERT_TRUE(edited);
  ExpectInconsistentIndex(dir);
}

// A restore appends a loaded store's entries again, and Append refuses what
// is not finite: fuzz/migration found a saved session with a NaN key that was
// migrated into the storage engine and then did not load from it.
TEST(KvStoreLoadTest, KeysAndValuesThatAreNotFiniteAreDataLoss) {
  const std::unique_ptr<KvStore> store = MakeStore("flat:dtype=f32", 20);
  const std::string nan_key = TempDir("nan_key");
  SaveWithEditedIndex(*store, nan_key, [](faiss::Index* index) {
    auto* flat = dynamic_cast<faiss::IndexFlatCodes*>(index);
    const float nan = std::nanf("");
    std::memcpy(flat->codes.data() + 5 * flat->code_size + 4, &nan, sizeof nan);
  });
  const std::string inf_value = TempDir("inf_value");
  ASSERT_TRUE(store->Save(inf_value).ok());
  std::string values = ReadFile(inf_value + "/values.bin");
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(&values[(7 * kDim + 2) * sizeof(float)], &inf, sizeof inf);
  WriteFile(inf_value + "/values.bin", values);
  RewriteManifest(inf_value);
  for (const std::string& dir : {nan_key, inf_value}) {
    const absl::Status loaded = KvStore::Load(dir).status();
    EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << loaded;
    EXPECT_NE(loaded.message().find("not finite"), std::string::npos) << loaded;
  }
}

// A built IVF (float codes, four lists).
std::unique_ptr<KvStore> BuiltIvf(const std::string& dtype = "f32") {
  std::unique_ptr<KvStore> store = MakeStore("ivf:nlist=4,train_size=200,dtype=" + dtype, 301);
  EXPECT_TRUE(store->index_built());
  return store;
}

TEST(KvStoreLoadTest, IvfListIdOutsideTheStoreIsDataLoss) {
  const std::string dir = TempDir("ivf_id");
  SaveWithEditedIndex(*BuiltIvf(), dir, [](faiss::Index* index) {
    auto* lists =
        dynamic_cast<faiss::ArrayInvertedLists*>(dynamic_cast<faiss::IndexIVF*>(index)->invlists);
    for (std::vector<faiss::Index::idx_t>& ids : lists->ids) {
      if (!ids.empty()) ids[0] = index->ntotal + 7;
    }
  });
  ExpectInconsistentIndex(dir);
}

TEST(KvStoreLoadTest, IvfDirectMapPointingAtAnotherEntryIsDataLoss) {
  const std::string dir = TempDir("ivf_direct_map");
  SaveWithEditedIndex(*BuiltIvf(), dir, [](faiss::Index* index) {
    faiss::DirectMap& map = dynamic_cast<faiss::IndexIVF*>(index)->direct_map;
    std::swap(map.array[0], map.array[1]);
  });
  ExpectInconsistentIndex(dir);
}

// A list size in index.faiss (after "ilar", nlist, code size, "full" and the
// length of the size_t vector of sizes) beyond what the file holds: a
// memory-mapped list then lies past the end of the mapping.
TEST(KvStoreLoadTest, MappedListsBeyondTheEndOfTheFileAreDataLoss) {
  const std::string dir = TempDir("ivf_sizes");
  ASSERT_TRUE(BuiltIvf()->Save(dir).ok());
  std::string index = ReadFile(dir + "/index.faiss");
  const size_t lists = index.find("ilar");
  ASSERT_NE(lists, std::string::npos);
  ASSERT_EQ(index.substr(lists + 4 + 16, 4), "full");
  const size_t first_size = lists + 4 + 16 + 4 + 8;  // after the vector's length
  // Entries the file does not hold, so many that a sum of sizes in int64
  // wraps (what fuzz/kv_store found) and the list lies past the mapping.
  const uint64_t claimed = 15564440312192434228ull;
  std::memcpy(&index[first_size], &claimed, sizeof claimed);
  WriteFile(dir + "/index.faiss", index);
  RewriteManifest(dir);
  const absl::Status loaded = KvStore::Load(dir).status();
  EXPECT_EQ(loaded.code(), absl::StatusCode::kDataLoss) << loaded;
}

// Whether some list of the IVF in `path`, memory-mapped as Load maps it,
// has its ids at an address misaligned for them.
bool HasMisalignedMappedIds(const std::string& path) {
  std::unique_ptr<faiss::Index> index(faiss::read_index(path.c_str(), faiss::IO_FLAG_MMAP));
  const faiss::InvertedLists* lists = dynamic_cast<faiss::IndexIVF*>(index.get())->invlists;
  EXPECT_EQ(dynamic_cast<const faiss::ArrayInvertedLists*>(lists), nullptr) << "not mapped";
  for (size_t l = 0; l < lists->nlist; ++l) {
    if (lists->list_size(l) == 0) continue;
    faiss::InvertedLists::ScopedIds ids(lists, l);
    if (reinterpret_cast<uintptr_t>(ids.get()) % alignof(faiss::Index::idx_t) != 0) return true;
  }
  return false;
}

TEST(KvStoreLoadTest, MappedIvfListsAtMisalignedOffsetsSearchAsSaved) {
  // fp16 codes of d + 2 = 10 dimensions, 20 bytes each: a list of an odd
  // size leaves the ids after it 4 bytes off their alignment in the file.
  for (const char* dtype : {"f16", "f32"}) {
    SCOPED_TRACE(dtype);
    const std::unique_ptr<KvStore> store = BuiltIvf(dtype);
    const std::string dir = TempDir("ivf_mapped");
    ASSERT_TRUE(store->Save(dir).ok());
    if (std::string(dtype) == "f16") {
      EXPECT_TRUE(HasMisalignedMappedIds(dir + "/index.faiss"));
    }
    absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const Results want = Search(*store, 7), got = Search(**loaded, 7);
    ASSERT_TRUE(got.status.ok()) << got.status;
    EXPECT_EQ(got.ids, want.ids);
    EXPECT_EQ(got.scores, want.scores);
    std::vector<float> want_keys(301 * kDim), got_keys(301 * kDim);
    ASSERT_TRUE(store->ReadKeys(0, 301, want_keys.data()).ok());
    ASSERT_TRUE((*loaded)->ReadKeys(0, 301, got_keys.data()).ok());
    EXPECT_EQ(got_keys, want_keys);
  }
}

}  // namespace
}  // namespace fot
