// Readers searching and reading while one writer appends and deletes. Built
// twice: into memory_tests, and instrumented with ThreadSanitizer into
// kv_store_tsan_test (CMakeLists.txt). Entries are a pure function of their
// id, so a reader can tell a torn or misplaced entry from a good one.
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memory/kv_store.h"
#include "memory/memory_options.h"

namespace fot {
namespace {

constexpr int kDim = 16;
constexpr int64_t kDocSize = 64;  // entry id belongs to document id / kDocSize
constexpr int kBatch = 32;
constexpr int kBatches = 80;  // 2560 entries: crosses the HNSW build and IVF training

// Multiples of 1/32 below 4 in magnitude: exact in f32, f16 and bf16, so the
// stored key equals the generated one whatever the dtype.
float KeyValue(int64_t id, int j) {
  uint64_t h = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull + j * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  h *= 0x94D049BB133111EBull;
  h ^= h >> 29;
  return (static_cast<int>(h % 255) - 127) / 32.0f;
}

void MakeEntry(int64_t id, float* key, float* value, Provenance* p) {
  for (int j = 0; j < kDim; ++j) {
    key[j] = KeyValue(id, j);
    value[j] = 2.0f * key[j];  // also exact in every dtype
  }
  *p = Provenance{id / kDocSize, id % kDocSize, static_cast<int32_t>(id)};
}

struct Shared {
  std::atomic<bool> done{false};
  std::atomic<int64_t> deleted_docs{0};  // documents 0 .. deleted_docs-1 are deleted
  std::atomic<int64_t> checks{0};
};

void Reader(const KvStore& store, Shared* shared, int seed) {
  std::vector<float> q(4 * kDim), key(kDim), value(kDim);
  std::vector<int64_t> ids(4 * 8);
  std::vector<float> scores(4 * 8);
  int64_t round = 0;
  while (!shared->done.load(std::memory_order_acquire)) {
    for (int i = 0; i < 4 * kDim; ++i) q[i] = KeyValue(1000003 * seed + round, i);
    ++round;
    const int64_t deleted_before = shared->deleted_docs.load(std::memory_order_acquire);
    SearchFilter filter;
    if (round % 3 == 0) filter.documents = {0, 5, 10, 15, 20, 25, 30, 35};
    ASSERT_TRUE(store
                    .Search(q.data(), 4, kDim, 8, round % 3 == 0 ? &filter : nullptr, ids.data(),
                            scores.data())
                    .ok());
    const int64_t size_after = store.size();
    for (int r = 0; r < 4; ++r) {
      for (int j = 0; j < 8; ++j) {
        const int64_t id = ids[r * 8 + j];
        if (id < 0) continue;
        ASSERT_LT(id, size_after);
        ASSERT_GE(id / kDocSize, deleted_before) << "a document deleted before the search";
        ASSERT_TRUE(store.ReadKeys(id, 1, key.data()).ok());
        ASSERT_TRUE(store.ReadValues(id, 1, value.data()).ok());
        double dot = 0;
        for (int t = 0; t < kDim; ++t) {
          ASSERT_EQ(key[t], KeyValue(id, t)) << "torn or misplaced key of id " << id;
          ASSERT_EQ(value[t], 2.0f * key[t]) << "torn or misplaced value of id " << id;
          dot += double(q[r * kDim + t]) * key[t];
        }
        ASSERT_NEAR(scores[r * 8 + j], dot, 1e-4 * std::max(1.0, std::fabs(dot)));
        const Provenance p = store.provenance(id);
        ASSERT_EQ(p.position, id % kDocSize);
        ASSERT_EQ(p.token, id);
        if (j > 0) {
          ASSERT_GE(scores[r * 8 + j - 1], scores[r * 8 + j]);
        }
        if (round % 3 == 0) {
          ASSERT_EQ((id / kDocSize) % 5, 0);
        }
      }
    }
    shared->checks.fetch_add(1, std::memory_order_relaxed);
  }
}

class KvStoreConcurrencyTest : public ::testing::TestWithParam<const char*> {};

TEST_P(KvStoreConcurrencyTest, ReadersSeeOnlyCompleteEntriesWhileOneThreadWrites) {
  MemoryOptions options;
  ASSERT_TRUE(ParseIndexSpec(GetParam(), &options).ok());
  absl::StatusOr<std::unique_ptr<KvStore>> created = KvStore::Create(kDim, options);
  ASSERT_TRUE(created.ok()) << created.status();
  KvStore& store = **created;
  Shared shared;
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) readers.emplace_back(Reader, std::cref(store), &shared, i + 1);
  std::vector<float> keys(kBatch * kDim), values(kBatch * kDim);
  std::vector<Provenance> provenance(kBatch);
  int64_t checks_seen = 0;
  for (int b = 0; b < kBatches; ++b) {
    if (b % 10 == 0) {
      // Readers must really run between appends: on a busy machine the writer
      // could otherwise finish before any reader is scheduled.
      while (shared.checks.load(std::memory_order_relaxed) <= checks_seen) {
        std::this_thread::yield();
      }
      checks_seen = shared.checks.load(std::memory_order_relaxed);
    }
    for (int i = 0; i < kBatch; ++i) {
      MakeEntry(store.size() + i, &keys[i * kDim], &values[i * kDim], &provenance[i]);
    }
    ASSERT_TRUE(
        store.Append(keys.data(), kDim, values.data(), kDim, provenance.data(), kBatch).ok());
    if (b % 10 == 9) {  // delete the oldest live document
      const int64_t doc = shared.deleted_docs.load();
      ASSERT_TRUE(store.DeleteDocument(doc).ok());
      shared.deleted_docs.store(doc + 1, std::memory_order_release);
    }
    std::this_thread::yield();
  }
  shared.done.store(true, std::memory_order_release);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(store.size(), kBatch * kBatches);
  EXPECT_EQ(store.live_size(), kBatch * kBatches - shared.deleted_docs.load() * kDocSize);
  EXPECT_TRUE(store.index_built());
  EXPECT_GT(shared.checks.load(), 0);
}

INSTANTIATE_TEST_SUITE_P(Kinds, KvStoreConcurrencyTest,
                         ::testing::Values("flat:dtype=f16", "flat:dtype=f32", "hnsw:dtype=bf16",
                                           "ivf:nlist=8,dtype=f16", "ivf:nlist=8,dtype=f32"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace fot
