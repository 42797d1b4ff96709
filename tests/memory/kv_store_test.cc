// Behaviour of the FAISS-backed store of one (memory layer, kv head): exact
// search, approximate recall, deletion, filters, reads, persistence, options.
#include "memory/kv_store.h"

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "memory/memory_options.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

enum class Data { kGaussian, kKeyLike, kClustered };

// kKeyLike imitates attention keys: a shared offset and a decaying spectrum
// (a few directions carry most of the variance), the hard case for
// inner-product search. kClustered: 64 well-separated clusters.
std::vector<float> MakeData(Data kind, int64_t n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  if (kind == Data::kGaussian) {
    for (float& v : x) v = g(rng);
  } else if (kind == Data::kKeyLike) {
    std::mt19937 fixed(7);
    std::vector<float> mean(d);
    for (float& v : mean) v = 0.5f * g(fixed);
    for (int64_t i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) x[i * d + j] = mean[j] + g(rng) * std::exp(-j / 12.0f);
    }
  } else {
    std::mt19937 fixed(99);
    std::vector<float> centers(64 * d);
    for (float& v : centers) v = g(fixed);
    std::uniform_int_distribution<int> pick(0, 63);
    for (int64_t i = 0; i < n; ++i) {
      const int c = pick(rng);
      for (int j = 0; j < d; ++j) x[i * d + j] = centers[c * d + j] + 0.5f * g(rng);
    }
  }
  return x;
}

// Entry i belongs to document i / doc_size.
std::vector<Provenance> MakeProvenance(int64_t first, int64_t n, int64_t doc_size = 100) {
  std::vector<Provenance> p(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = first + i;
    p[i] = Provenance{id / doc_size, id % doc_size, static_cast<int32_t>(id * 7 % 32000)};
  }
  return p;
}

std::unique_ptr<KvStore> MakeStore(int d, const std::string& spec) {
  MemoryOptions o;
  absl::Status s = ParseIndexSpec(spec, &o);
  EXPECT_TRUE(s.ok()) << s;
  absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Create(d, o);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

// Appends keys [n, d] with values 0.5 * key + 1 and MakeProvenance.
void Fill(KvStore* store, const std::vector<float>& keys, int64_t doc_size = 100) {
  const int d = store->head_dim();
  const int64_t n = keys.size() / d;
  std::vector<float> values(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) values[i] = 0.5f * keys[i] + 1.0f;
  const std::vector<Provenance> p = MakeProvenance(store->size(), n, doc_size);
  ASSERT_TRUE(store->Append(keys.data(), d, values.data(), d, p.data(), n).ok());
}

struct Results {
  std::vector<int64_t> ids;
  std::vector<float> scores;
};

Results Search(const KvStore& store, const std::vector<float>& q, int k,
               const SearchFilter* filter = nullptr) {
  const int d = store.head_dim();
  const int64_t nq = q.size() / d;
  Results r{std::vector<int64_t>(nq * k), std::vector<float>(nq * k)};
  absl::Status s = store.Search(q.data(), nq, d, k, filter, r.ids.data(), r.scores.data());
  EXPECT_TRUE(s.ok()) << s;
  return r;
}

// Exact top-k over the keys as stored, in double, skipping ids where !keep(id).
template <typename Keep>
Results BruteForce(const KvStore& store, const std::vector<float>& q, int k, Keep keep) {
  const int d = store.head_dim();
  const int64_t n = store.size(), nq = q.size() / d;
  std::vector<float> keys(n * d);
  EXPECT_TRUE(store.ReadKeys(0, n, keys.data()).ok());
  Results r{std::vector<int64_t>(nq * k, -1),
            std::vector<float>(nq * k, -std::numeric_limits<float>::infinity())};
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t id = 0; id < n; ++id) {
      if (!keep(id)) continue;
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += double(q[i * d + j]) * keys[id * d + j];
      all.push_back({-dot, id});
    }
    const int m = std::min<int>(k, all.size());
    std::partial_sort(all.begin(), all.begin() + m, all.end());
    for (int j = 0; j < m; ++j) {
      r.ids[i * k + j] = all[j].second;
      r.scores[i * k + j] = static_cast<float>(-all[j].first);
    }
  }
  return r;
}
Results BruteForce(const KvStore& store, const std::vector<float>& q, int k) {
  return BruteForce(store, q, k, [&](int64_t id) { return !store.is_deleted(id); });
}

double Recall(const Results& got, const Results& want, int64_t nq, int k) {
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    std::set<int64_t> truth(want.ids.begin() + i * k, want.ids.begin() + (i + 1) * k);
    for (int j = 0; j < k; ++j) hits += truth.count(got.ids[i * k + j]);
  }
  return double(hits) / (nq * k);
}

void ExpectSameResults(const Results& a, const Results& b, float tol) {
  ASSERT_EQ(a.ids.size(), b.ids.size());
  for (size_t i = 0; i < a.ids.size(); ++i) {
    ASSERT_EQ(a.ids[i], b.ids[i]) << "at " << i;
    if (a.ids[i] >= 0) {
      ASSERT_NEAR(a.scores[i], b.scores[i], tol * std::max(1.0f, std::fabs(b.scores[i])));
    }
  }
}

// ---------------------------------------------------------------------------
// Options and specs

TEST(MemoryOptionsTest, ParsesDescribesAndRoundTrips) {
  MemoryOptions o;
  ASSERT_TRUE(ParseIndexSpec("hnsw:m=16,ef_search=64", &o).ok());
  EXPECT_EQ(o.index_kind, IndexKind::kHnsw);
  EXPECT_EQ(o.hnsw_m, 16);
  EXPECT_EQ(o.hnsw_ef_search, 64);
  ASSERT_TRUE(ParseIndexSpec("ivf:nlist=1024,nprobe=32,pq_m=16,dtype=bf16", &o).ok());
  EXPECT_EQ(o.index_kind, IndexKind::kIvf);
  EXPECT_TRUE(o.ivf_pq);
  EXPECT_EQ(o.ivf_pq_m, 16);
  EXPECT_EQ(o.dtype, StorageType::kBFloat16);
  EXPECT_TRUE(ValidateMemoryOptions(o, 64).ok());
  for (const MemoryOptions& want : {o, MemoryOptions{}}) {
    MemoryOptions got;
    got.hnsw_m = 5;  // must not matter for other kinds
    ASSERT_TRUE(ParseIndexSpec(DescribeOptions(want), &got).ok()) << DescribeOptions(want);
    EXPECT_EQ(DescribeOptions(got), DescribeOptions(want));
  }
  ASSERT_TRUE(ParseIndexSpec("exact", &o).ok());
  EXPECT_EQ(o.index_kind, IndexKind::kFlat);
  EXPECT_EQ(*ParseStorageType("f32"), StorageType::kFloat32);
  EXPECT_EQ(*ParseStorageType("float16"), StorageType::kFloat16);
  EXPECT_EQ(*ParseStorageType("bf16"), StorageType::kBFloat16);
}

TEST(MemoryOptionsTest, RejectsBadSpecsAndOptionsWithClearMessages) {
  struct Case {
    const char* spec;
    const char* message_part;
  };
  for (const Case& c :
       {Case{"annoy", "unknown index kind 'annoy'"}, Case{"hnsw:m", "expected key=value"},
        Case{"hnsw:m=abc", "'m' expects an integer"},
        Case{"hnsw:nlist=4", "unknown parameter 'nlist' for index kind hnsw"},
        Case{"ivf:nlist=8,nlist=9", "given twice"}, Case{"ivf:pq=0,pq_m=8", "contradicts"},
        Case{"ivf:max_scan=abc", "'max_scan' value abc is not a number"},
        Case{"flat:dtype=f8", "unknown storage type 'f8'"}}) {
    MemoryOptions o;
    const MemoryOptions before = o;
    absl::Status s = ParseIndexSpec(c.spec, &o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_NE(s.message().find(c.message_part), std::string::npos) << s.message();
    EXPECT_EQ(o, before) << "options changed by a failed parse of " << c.spec;
  }
  struct Bad {
    const char* spec;
    int head_dim;
    const char* field;
  };
  for (const Bad& b :
       {Bad{"hnsw:m=1", 64, "hnsw_m"}, Bad{"hnsw:ef_search=0", 64, "ef_search"},
        Bad{"ivf:nlist=16,nprobe=32", 64, "ivf_nprobe"}, Bad{"ivf:max_scan=0", 64, "ivf_max_scan"},
        Bad{"ivf:max_scan=1.5", 64, "ivf_max_scan"},
        Bad{"ivf:decode_scan=0", 64, "ivf_decode_scan"},
        Bad{"ivf:nlist=64,train_size=100", 64, "ivf_train_size"},
        Bad{"ivf:pq_m=100", 64, "ivf_pq_m"}, Bad{"flat", 0, "head_dim"}}) {
    MemoryOptions o;
    ASSERT_TRUE(ParseIndexSpec(b.spec, &o).ok()) << b.spec;
    absl::Status s = ValidateMemoryOptions(o, b.head_dim);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.spec;
    EXPECT_NE(s.message().find(b.field), std::string::npos) << s.message();
    EXPECT_EQ(KvStore::Create(b.head_dim, o).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// ---------------------------------------------------------------------------
// Flat: exact

TEST(KvStoreTest, FlatF32EqualsBruteForce) {
  auto store = MakeStore(64, "flat:dtype=f32");
  Fill(store.get(), MakeData(Data::kGaussian, 3000, 64, 1));
  const std::vector<float> q = MakeData(Data::kGaussian, 40, 64, 2);
  ExpectSameResults(Search(*store, q, 10), BruteForce(*store, q, 10), 1e-5f);
}

TEST(KvStoreTest, FlatF16EqualsBruteForceOnStoredKeysWithinFp16OfOriginal) {
  auto store = MakeStore(64, "flat:dtype=f16");
  const std::vector<float> keys = MakeData(Data::kGaussian, 3000, 64, 3);
  Fill(store.get(), keys);
  const std::vector<float> q = MakeData(Data::kGaussian, 40, 64, 4);
  const Results got = Search(*store, q, 10);
  ExpectSameResults(got, BruteForce(*store, q, 10), 1e-5f);
  for (int64_t i = 0; i < 40; ++i) {  // stored keys are the originals rounded to fp16
    for (int j = 0; j < 10; ++j) {
      const int64_t id = got.ids[i * 10 + j];
      double exact = 0, bound = 0;
      for (int t = 0; t < 64; ++t) {
        exact += double(q[i * 64 + t]) * keys[id * 64 + t];
        bound += std::fabs(q[i * 64 + t] * keys[id * 64 + t]) * std::ldexp(1.0, -11);
      }
      EXPECT_NEAR(got.scores[i * 10 + j], exact, bound + 1e-5);
    }
  }
}

TEST(KvStoreTest, PadsWhenKExceedsLiveEntriesAndReturnsAllInOrder) {
  for (const char* spec : {"flat", "hnsw", "ivf:nlist=4"}) {
    auto store = MakeStore(16, spec);
    Fill(store.get(), MakeData(Data::kGaussian, 30, 16, 5), /*doc_size=*/10);
    ASSERT_TRUE(store->DeleteDocument(1).ok());
    const std::vector<float> q = MakeData(Data::kGaussian, 3, 16, 6);
    const Results got = Search(*store, q, 25);
    ExpectSameResults(got, BruteForce(*store, q, 25), 1e-5f);
    for (int i = 0; i < 3; ++i) {
      EXPECT_GE(got.ids[i * 25 + 19], 0) << spec;
      for (int j = 20; j < 25; ++j) {
        EXPECT_EQ(got.ids[i * 25 + j], -1) << spec;
        EXPECT_EQ(got.scores[i * 25 + j], -std::numeric_limits<float>::infinity());
      }
    }
  }
  auto empty = MakeStore(16, "flat");
  const Results none = Search(*empty, MakeData(Data::kGaussian, 1, 16, 7), 3);
  EXPECT_EQ(none.ids, std::vector<int64_t>(3, -1));
}

TEST(KvStoreTest, StridedKeysValuesAndQueries) {
  auto store = MakeStore(8, "flat:dtype=f32");
  std::vector<float> keys = MakeData(Data::kGaussian, 20, 12, 8);  // stride 12
  std::vector<Provenance> p = MakeProvenance(0, 20);
  ASSERT_TRUE(store->Append(keys.data(), 12, keys.data(), 12, p.data(), 20).ok());
  std::vector<float> row(8);
  ASSERT_TRUE(store->ReadKeys(5, 1, row.data()).ok());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), keys.begin() + 5 * 12));
  std::vector<int64_t> ids(2);
  std::vector<float> scores(2);
  ASSERT_TRUE(
      store->Search(keys.data() + 3 * 12, 1, 12, 2, nullptr, ids.data(), scores.data()).ok());
  const std::vector<float> q(keys.begin() + 36, keys.begin() + 44);
  EXPECT_EQ(ids[0], BruteForce(*store, q, 2).ids[0]);
}

// ---------------------------------------------------------------------------
// Reads

TEST(KvStoreTest, ReadAndGatherReturnStoredValues) {
  const std::vector<float> keys = MakeData(Data::kGaussian, 50, 32, 9);
  for (const char* dtype : {"f32", "f16", "bf16"}) {
    auto store = MakeStore(32, std::string("flat:dtype=") + dtype);
    Fill(store.get(), keys);
    // Relative rounding of the storage type (f32 exact).
    const double eps = dtype[0] == 'b'   ? std::ldexp(1.0, -8)
                       : dtype[1] == '1' ? std::ldexp(1.0, -11)
                                         : 0;
    std::vector<float> values(50 * 32), k(50 * 32);
    ASSERT_TRUE(store->ReadValues(0, 50, values.data()).ok());
    ASSERT_TRUE(store->ReadKeys(0, 50, k.data()).ok());
    for (int i = 0; i < 50 * 32; ++i) {
      const float want = 0.5f * keys[i] + 1.0f;
      EXPECT_NEAR(values[i], want, eps * std::fabs(want)) << dtype;
      // bf16 keys are stored as fp16 (memory_options.h).
      const double key_eps = dtype[1] == '3' ? 0 : std::ldexp(1.0, -11);
      EXPECT_NEAR(k[i], keys[i], key_eps * std::fabs(keys[i])) << dtype;
    }
    const std::vector<int64_t> ids = {7, -1, 3};
    std::vector<float> gathered(3 * 32);
    ASSERT_TRUE(store->GatherValues(ids.data(), 3, gathered.data()).ok());
    for (int j = 0; j < 32; ++j) {
      EXPECT_EQ(gathered[j], values[7 * 32 + j]);
      EXPECT_EQ(gathered[32 + j], 0.0f);
      EXPECT_EQ(gathered[64 + j], values[3 * 32 + j]);
    }
    const int64_t bad[] = {50};
    EXPECT_EQ(store->GatherValues(bad, 1, gathered.data()).code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(store->ReadValues(40, 11, values.data()).code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(store->ReadKeys(-1, 1, values.data()).code(), absl::StatusCode::kOutOfRange);
    Provenance p[2];
    ASSERT_TRUE(store->ReadProvenance(48, 2, p).ok());
    EXPECT_EQ(p[1], MakeProvenance(49, 1)[0]);
    EXPECT_EQ(store->provenance(12), MakeProvenance(12, 1)[0]);
    EXPECT_EQ(store->provenance(50), (Provenance{-1, -1, -1}));
  }
}

TEST(KvStoreTest, AppendRejectsNonFiniteAndOutOfRangeInputAtomically) {
  auto f16 = MakeStore(4, "flat:dtype=f16");
  auto f32 = MakeStore(4, "flat:dtype=f32");
  const Provenance p[2] = {};
  const float big[8] = {1, 2, 3, 4, 1, 2, 1e5f, 4};
  const float nan[8] = {1, 2, 3, 4, 1, std::nanf(""), 3, 4};
  const float ok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  absl::Status s = f16->Append(big, 4, ok, 4, p, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("key row 1 dim 2"), std::string::npos) << s.message();
  EXPECT_EQ(f16->Append(ok, 4, big, 4, p, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f16->size(), 0);
  EXPECT_TRUE(f32->Append(big, 4, big, 4, p, 2).ok());
  EXPECT_EQ(f32->Append(nan, 4, ok, 4, p, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f32->size(), 2);
  EXPECT_EQ(f32->Append(ok, 3, ok, 4, p, 2).code(), absl::StatusCode::kInvalidArgument);
  std::vector<int64_t> ids(1);
  std::vector<float> scores(1);
  EXPECT_EQ(f32->Search(ok, 1, 4, 0, nullptr, ids.data(), scores.data()).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Approximate kinds

struct RecallCase {
  const char* spec;
  Data data;
};

TEST(KvStoreTest, ApproximateRecallAtDefaultParameters) {
  constexpr int kD = 64, kN = 20000, kQ = 200, kK = 10;
  for (const RecallCase& c :
       {RecallCase{"hnsw", Data::kKeyLike}, RecallCase{"hnsw", Data::kClustered},
        RecallCase{"ivf", Data::kKeyLike}, RecallCase{"ivf", Data::kClustered}}) {
    auto store = MakeStore(kD, c.spec);
    Fill(store.get(), MakeData(c.data, kN, kD, 11));
    ASSERT_TRUE(store->index_built());
    const std::vector<float> q = MakeData(c.data, kQ, kD, 12);
    const Results got = Search(*store, q, kK);
    const Results want = BruteForce(*store, q, kK);
    const double recall = Recall(got, want, kQ, kK);
    EXPECT_GE(recall, 0.95) << c.spec << " data " << static_cast<int>(c.data);
    RecordProperty(std::string(c.spec) + "_recall_" + std::to_string(static_cast<int>(c.data)),
                   std::to_string(recall));
    std::vector<float> key(kD);
    for (int64_t i = 0; i < kQ; ++i) {  // scores are exact inner products, best first
      for (int j = 0; j < kK; ++j) {
        const int64_t id = got.ids[i * kK + j];
        ASSERT_GE(id, 0);
        ASSERT_TRUE(store->ReadKeys(id, 1, key.data()).ok());
        double dot = 0;
        for (int t = 0; t < kD; ++t) dot += double(q[i * kD + t]) * key[t];
        EXPECT_NEAR(got.scores[i * kK + j], dot, 1e-4 * std::max(1.0, std::fabs(dot)));
        if (j > 0) {
          EXPECT_GE(got.scores[i * kK + j - 1], got.scores[i * kK + j]);
        }
      }
    }
  }
}

TEST(KvStoreTest, IvfSearchesExactlyBeforeTrainingAndTrainsOnceAtThreshold) {
  // nprobe = nlist: the trained index scans every list, so it must find every
  // entry, before and after training.
  auto store = MakeStore(32, "ivf:nlist=16,nprobe=16,train_size=700");
  auto flat = MakeStore(32, "flat");
  const std::vector<float> keys = MakeData(Data::kKeyLike, 1200, 32, 13);
  const std::vector<float> q = MakeData(Data::kKeyLike, 30, 32, 14);
  const std::vector<float> first(keys.begin(), keys.begin() + 600 * 32);
  Fill(store.get(), first);
  Fill(flat.get(), first);
  EXPECT_FALSE(store->index_built());
  ExpectSameResults(Search(*store, q, 20), Search(*flat, q, 20), 1e-6f);
  const std::vector<float> second(keys.begin() + 600 * 32, keys.begin() + 700 * 32);
  Fill(store.get(), second);
  Fill(flat.get(), second);
  EXPECT_TRUE(store->index_built());  // exactly at 700 keys
  const std::vector<float> third(keys.begin() + 700 * 32, keys.end());
  Fill(store.get(), third);
  Fill(flat.get(), third);
  EXPECT_EQ(store->size(), 1200);
  ExpectSameResults(Search(*store, q, 20), Search(*flat, q, 20), 1e-5f);
  // Every entry is its own best match among entries of its document.
  std::vector<float> row(32);
  for (int64_t id : {0, 599, 650, 699, 700, 1199}) {
    ASSERT_TRUE(store->ReadKeys(id, 1, row.data()).ok());
    const SearchFilter only{{id / 100}};
    const Results r = Search(*store, row, 100, &only);
    EXPECT_NE(std::find(r.ids.begin(), r.ids.end(), id), r.ids.end()) << id;
  }
}

TEST(KvStoreTest, OverflowKeysAboveTheNormBoundAreFoundExactly) {
  auto store = MakeStore(16, "hnsw");
  Fill(store.get(), MakeData(Data::kGaussian, 1100, 16, 15));
  ASSERT_TRUE(store->index_built());
  std::vector<float> big = MakeData(Data::kGaussian, 50, 16, 16);
  for (float& v : big) v *= 10;  // far above 1.25 x the largest norm so far
  Fill(store.get(), big);
  EXPECT_EQ(store->overflow_size(), 50);
  const std::vector<float> q = MakeData(Data::kGaussian, 20, 16, 17);
  ExpectSameResults(Search(*store, q, 10), BruteForce(*store, q, 10), 1e-5f);
}

// ---------------------------------------------------------------------------
// Deletion and filters, every kind

struct Kind {
  const char* spec;
  int64_t n;  // entries: enough to build the approximate index (PQ trains on 9984)
};
const Kind kAllKinds[] = {
    {"flat:dtype=f32", 3000},  {"flat:dtype=f16", 3000},
    {"flat:dtype=bf16", 3000}, {"hnsw", 3000},
    {"ivf:nlist=16", 3000},    {"ivf:nlist=16,pq_m=3,train_size=9984", 10200}};

TEST(KvStoreTest, DeleteDocumentRemovesExactlyThatDocumentForEveryKind) {
  for (const Kind& kind : kAllKinds) {
    SCOPED_TRACE(kind.spec);
    const int64_t doc_size = kind.n / 12;
    auto store = MakeStore(16, kind.spec);
    Fill(store.get(), MakeData(Data::kKeyLike, kind.n, 16, 18), doc_size);
    ASSERT_TRUE(store->index_built());
    const std::vector<float> q = MakeData(Data::kKeyLike, 40, 16, 19);
    const Results before = Search(*store, q, 50);
    ASSERT_TRUE(store->DeleteDocument(3).ok());
    EXPECT_EQ(store->DeleteDocument(3).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store->DeleteDocument(77).code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(store->live_size(), kind.n - doc_size);
    EXPECT_EQ(store->Documents(), (std::vector<int64_t>{0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11}));
    EXPECT_TRUE(store->is_deleted(3 * doc_size + 5));
    EXPECT_FALSE(store->is_deleted(3 * doc_size - 1));
    const Results after = Search(*store, q, 50);
    // Exactly document 3 is gone: the other old results are still found.
    std::set<int64_t> now(after.ids.begin(), after.ids.end());
    int64_t kept = 0, found = 0;
    for (int64_t id : before.ids) {
      if (id < 0 || store->provenance(id).document == 3) continue;
      ++kept;
      found += now.count(id);
    }
    for (int64_t id : after.ids) {
      ASSERT_GE(id, 0);
      EXPECT_NE(store->provenance(id).document, 3);
    }
    EXPECT_GE(found, kept * 0.95);
    if (kind.spec[0] == 'f') {
      ExpectSameResults(after, BruteForce(*store, q, 50), 1e-5f);
    }
  }
}

TEST(KvStoreTest, DocumentFilterRestrictsResultsForEveryKind) {
  for (const Kind& kind : kAllKinds) {
    SCOPED_TRACE(kind.spec);
    const int64_t doc_size = kind.n / 12;
    auto store = MakeStore(16, kind.spec);
    Fill(store.get(), MakeData(Data::kKeyLike, kind.n, 16, 20), doc_size);
    ASSERT_TRUE(store->DeleteDocument(5).ok());
    const std::vector<float> q = MakeData(Data::kKeyLike, 20, 16, 21);
    // A small selection (1/12 of the entries) is searched exactly by every kind.
    const SearchFilter small{{2, 5, 2}};
    const Results r = Search(*store, q, 30, &small);
    const Results want =
        BruteForce(*store, q, 30, [&](int64_t id) { return store->provenance(id).document == 2; });
    ExpectSameResults(r, want, 1e-5f);  // PQ: exact over the reconstructions
    // A large selection goes through the approximate index with the selector.
    const SearchFilter large{{0, 1, 2, 3, 4, 5, 6, 7, 8}};
    const Results l = Search(*store, q, 30, &large);
    for (int64_t id : l.ids) {
      ASSERT_GE(id, 0);
      EXPECT_LE(store->provenance(id).document, 8);
      EXPECT_NE(store->provenance(id).document, 5);
    }
    const SearchFilter none{{5, 42}};
    EXPECT_EQ(Search(*store, q, 3, &none).ids, std::vector<int64_t>(60, -1));
  }
}

// ---------------------------------------------------------------------------
// Persistence

std::string TempDir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::remove_all(dir);
  fs::remove_all(dir.string() + ".tmp");
  return dir.string();
}

void ExpectSameStore(const KvStore& a, const KvStore& b, const std::vector<float>& q) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.live_size(), b.live_size());
  EXPECT_EQ(a.Documents(), b.Documents());
  EXPECT_EQ(DescribeOptions(a.options()), DescribeOptions(b.options()));
  EXPECT_EQ(a.index_built(), b.index_built());
  const int64_t n = a.size(), d = a.head_dim();
  std::vector<float> va(n * d), vb(n * d), ka(n * d), kb(n * d);
  ASSERT_TRUE(a.ReadValues(0, n, va.data()).ok());
  ASSERT_TRUE(b.ReadValues(0, n, vb.data()).ok());
  ASSERT_TRUE(a.ReadKeys(0, n, ka.data()).ok());
  ASSERT_TRUE(b.ReadKeys(0, n, kb.data()).ok());
  EXPECT_EQ(va, vb);
  EXPECT_EQ(ka, kb);
  for (int64_t id = 0; id < n; id += 97) {
    EXPECT_EQ(a.provenance(id), b.provenance(id));
    EXPECT_EQ(a.is_deleted(id), b.is_deleted(id));
  }
  const Results ra = Search(a, q, 20), rb = Search(b, q, 20);
  EXPECT_EQ(ra.ids, rb.ids);
  EXPECT_EQ(ra.scores, rb.scores);
}

TEST(KvStoreTest, IvfWithAutomaticListsRetrainsAsTheMemoryGrows) {
  // max_scan=1 probes every list, so whatever the lists, results must be exact.
  auto store = MakeStore(16, "ivf:max_scan=1,train_size=2048");
  const std::vector<float> q = MakeData(Data::kGaussian, 40, 16, 31);
  Fill(store.get(), MakeData(Data::kGaussian, 2048, 16, 32));
  EXPECT_EQ(store->index_lists(), IvfListsFor(2048));
  std::vector<float> big = MakeData(Data::kGaussian, 50, 16, 33);
  for (float& v : big) v *= 10;  // beyond the norm bound of the first training
  Fill(store.get(), big);
  EXPECT_EQ(store->overflow_size(), 50);
  ExpectSameResults(Search(*store, q, 30), BruteForce(*store, q, 30), 1e-5f);

  Fill(store.get(), MakeData(Data::kGaussian, 8192 - store->size(), 16, 34));
  EXPECT_EQ(store->index_lists(), IvfListsFor(8192));
  EXPECT_GT(store->index_lists(), IvfListsFor(2048));
  EXPECT_EQ(store->overflow_size(), 0);  // the retraining's bound covers every key
  ExpectSameResults(Search(*store, q, 30), BruteForce(*store, q, 30), 1e-5f);

  ASSERT_TRUE(store->DeleteDocument(3).ok());
  const auto live = [&](int64_t id) { return id / 100 != 3; };
  ExpectSameResults(Search(*store, q, 30), BruteForce(*store, q, 30, live), 1e-5f);

  // A loaded (memory-mapped) index is retrained the same way.
  const std::string dir = TempDir("ivf_auto");
  ASSERT_TRUE(store->Save(dir).ok());
  absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameResults(Search(**loaded, q, 30), Search(*store, q, 30), 0.0f);
  Fill(loaded->get(), MakeData(Data::kGaussian, 32768 - 8192, 16, 35));
  EXPECT_EQ((*loaded)->index_lists(), IvfListsFor(32768));
  ExpectSameResults(Search(**loaded, q, 30), BruteForce(**loaded, q, 30, live), 1e-5f);
}

TEST(KvStoreTest, AStoreDependsOnItsEntriesNotOnHowTheyWereBatched) {
  // A restart replays a session's entries in other batches than its windows
  // were appended in; it must get the same store, retrainings included.
  const std::vector<float> keys = MakeData(Data::kKeyLike, 9000, 16, 41);
  const std::vector<float> q = MakeData(Data::kKeyLike, 30, 16, 42);
  for (const std::string spec : {"ivf:train_size=1000", "ivf:train_size=1000,dtype=f32"}) {
    SCOPED_TRACE(spec);
    auto whole = MakeStore(16, spec), windows = MakeStore(16, spec), odd = MakeStore(16, spec);
    Fill(whole.get(), keys);
    for (int64_t first = 0; first < 9000; first += 128) {
      const int64_t n = std::min<int64_t>(128, 9000 - first);
      Fill(windows.get(), {keys.begin() + first * 16, keys.begin() + (first + n) * 16});
    }
    for (int64_t first = 0, n = 1; first < 9000; first += n, n = n * 3 % 1013 + 1) {
      n = std::min<int64_t>(n, 9000 - first);
      Fill(odd.get(), {keys.begin() + first * 16, keys.begin() + (first + n) * 16});
    }
    EXPECT_GT(whole->index_lists(), IvfListsFor(1000));  // retrained on the way
    ExpectSameStore(*whole, *windows, q);
    ExpectSameStore(*whole, *odd, q);
  }
}

TEST(KvStoreTest, IvfListsHoldAFixedNumberOfKeysAsTheMemoryGrows) {
  EXPECT_EQ(IvfListsFor(0), 1);
  EXPECT_EQ(IvfListsFor(100), 1);
  EXPECT_EQ(IvfListsFor(10240), 128);  // 80 keys per list
  EXPECT_EQ(IvfListsFor(131072), 2048);
  EXPECT_EQ(IvfListsFor(1 << 20), 16384);
  EXPECT_EQ(IvfListsFor(int64_t{1} << 40), 1 << 20);  // the FAISS-sane cap
  MemoryOptions o;
  ASSERT_TRUE(ParseIndexSpec("ivf", &o).ok());
  EXPECT_EQ(DescribeOptions(ResolveMemoryOptions(o, 64)),
            "ivf:nlist=auto,nprobe=auto,max_scan=0.05,decode_scan=0.02,train_size=10240,pq=0,"
            "dtype=f16");
  EXPECT_EQ(IvfScanBudget(o, 1 << 20, 512), 52429);          // 5% of 1M keys
  EXPECT_EQ(IvfScanBudget(o, 1 << 20, 1), 20972);            // a generated token's: 2%
  EXPECT_EQ(IvfScanBudget(o, 10000, 512), kIvfMinScanKeys);  // small memories: a fixed floor
  ASSERT_TRUE(ParseIndexSpec("ivf:nlist=64,nprobe=8,max_scan=0.25", &o).ok());
  EXPECT_EQ(o.ivf_nprobe, 8);
  EXPECT_EQ(o.ivf_max_scan, 0.25);
  EXPECT_EQ(o.ivf_decode_scan, 0.25);  // max_scan alone is every query's budget
  ASSERT_TRUE(ParseIndexSpec("ivf:max_scan=0.1,decode_scan=0.01", &o).ok());
  EXPECT_EQ(o.ivf_max_scan, 0.1);
  EXPECT_EQ(o.ivf_decode_scan, 0.01);
  ASSERT_TRUE(ParseIndexSpec("ivf:nprobe=auto", &o).ok());
  EXPECT_EQ(o.ivf_nprobe, 0);
  ASSERT_TRUE(ParseIndexSpec("ivf:nlist=auto", &o).ok());
  EXPECT_EQ(o.ivf_nlist, 0);
}

TEST(KvStoreTest, SaveLoadRoundTripForEveryKindAndState) {
  const std::vector<float> q = MakeData(Data::kKeyLike, 20, 16, 23);
  for (const Kind& kind : kAllKinds) {
    const std::vector<float> keys = MakeData(Data::kKeyLike, kind.n, 16, 22);
    for (int64_t n : {int64_t{500}, kind.n}) {  // before and after the build
      SCOPED_TRACE(std::string(kind.spec) + " n=" + std::to_string(n));
      auto store = MakeStore(16, kind.spec);
      Fill(store.get(), std::vector<float>(keys.begin(), keys.begin() + n * 16), 250);
      if (n > 1000) {
        ASSERT_TRUE(store->DeleteDocument(1).ok());
      }
      const std::string dir = TempDir("roundtrip");
      ASSERT_TRUE(store->Save(dir).ok());
      absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      ExpectSameStore(*store, **loaded, q);
      // Both go on alike (memory-mapped IVF lists are copied on the first
      // append). HNSW inserts in parallel and k-means sums in parallel, so only
      // stores whose next append changes no trained structure are compared.
      const std::vector<float> more = MakeData(Data::kKeyLike, 300, 16, 24);
      Fill(store.get(), more, 250);
      Fill(loaded->get(), more, 250);
      if (kind.spec[0] == 'f' || (kind.spec[0] == 'i' && n > 1000)) {
        ExpectSameStore(*store, **loaded, q);
      }
      // Saving over the directory it was loaded from replaces it.
      ASSERT_TRUE((*loaded)->Save(dir).ok());
      absl::StatusOr<std::unique_ptr<KvStore>> again = KvStore::Load(dir);
      ASSERT_TRUE(again.ok()) << again.status();
      ExpectSameStore(**loaded, **again, q);
      EXPECT_FALSE(fs::exists(dir + ".tmp"));
    }
  }
}

TEST(KvStoreTest, LoadReportsMissingTruncatedAndCorruptFiles) {
  auto store = MakeStore(16, "ivf:nlist=16");
  Fill(store.get(), MakeData(Data::kKeyLike, 2000, 16, 25));
  const std::string dir = TempDir("corrupt");
  ASSERT_TRUE(store->Save(dir).ok());
  const std::string copy = TempDir("corrupt_copy");
  auto fresh = [&] {
    fs::remove_all(copy);
    fs::copy(dir, copy);
  };
  EXPECT_EQ(KvStore::Load(TempDir("nothing_here")).status().code(), absl::StatusCode::kNotFound);
  fresh();
  fs::remove(copy + "/MANIFEST");
  EXPECT_EQ(KvStore::Load(copy).status().code(), absl::StatusCode::kNotFound);
  fresh();
  fs::remove(copy + "/provenance.bin");
  EXPECT_EQ(KvStore::Load(copy).status().code(), absl::StatusCode::kNotFound);
  for (const char* file : {"index.faiss", "values.bin", "MANIFEST"}) {
    fresh();
    fs::resize_file(copy + "/" + file, fs::file_size(copy + "/" + file) - 7);
    absl::Status s = KvStore::Load(copy).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << file << ": " << s;
  }
  for (const char* file : {"index.faiss", "values.bin", "deleted.bin"}) {
    fresh();
    std::fstream f(copy + "/" + file, std::ios::in | std::ios::out | std::ios::binary);
    const auto middle = static_cast<std::streamoff>(fs::file_size(copy + "/" + file) / 2);
    f.seekg(middle);
    const char byte = static_cast<char>(f.get());
    f.seekp(middle);
    f.put(static_cast<char>(byte ^ 0x5a));
    f.close();
    absl::Status s = KvStore::Load(copy).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << file << ": " << s;
    EXPECT_NE(s.message().find(file), std::string::npos) << s.message();
  }
}

TEST(KvStoreTest, FailedSaveLeavesThePreviousSaveIntact) {
  auto small = MakeStore(16, "flat");
  Fill(small.get(), MakeData(Data::kGaussian, 100, 16, 26));
  const std::string dir = TempDir("failed_save");
  ASSERT_TRUE(small->Save(dir).ok());
  auto big = MakeStore(16, "flat");
  Fill(big.get(), MakeData(Data::kGaussian, 20000, 16, 27));
  // Make writes beyond 64 KiB fail (works as root too, unlike permissions).
  rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_IGN);
  rlimit limited = old;
  limited.rlim_cur = 64 << 10;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
  const absl::Status s = big->Save(dir);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameStore(*small, **loaded, MakeData(Data::kGaussian, 5, 16, 28));
  EXPECT_FALSE(fs::exists(dir + ".saving"));
  // A directory that is not a saved store is never replaced.
  const std::string other = TempDir("not_a_store");
  fs::create_directories(other);
  std::ofstream(other + "/precious.txt") << "keep me";
  EXPECT_EQ(small->Save(other).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fs::exists(other + "/precious.txt"));
}

// Every write of a save failing in turn (ENOSPC, then EIO): the error comes
// back, and the directory still loads as the previous save or the new one.
TEST(KvStoreTest, AFailingDiskAtAnyWriteKeepsAWholeSave) {
  for (const std::string spec : {"flat", "ivf:nlist=4,train_size=160"}) {
    auto previous = MakeStore(8, spec);
    Fill(previous.get(), MakeData(Data::kGaussian, 100, 8, 40));
    auto next = MakeStore(8, spec);
    Fill(next.get(), MakeData(Data::kGaussian, 300, 8, 41));
    const std::string dir = TempDir("failing_disk");
    ASSERT_TRUE(previous->Save(dir).ok());
    for (const int error_number : {ENOSPC, EIO}) {
      const int operations = ForEachFailurePoint(
          [&](Env& env) { return next->Save(dir, &env); },
          [&](const absl::Status& status, int fail_at) {
            auto loaded = KvStore::Load(dir);
            ASSERT_TRUE(loaded.ok())
                << spec << " failing at " << fail_at << ": " << loaded.status();
            if (status.ok()) {
              EXPECT_EQ((*loaded)->size(), next->size()) << fail_at;
              return;
            }
            EXPECT_NE(status.message().find("injected"), std::string::npos) << status;
            EXPECT_TRUE((*loaded)->size() == previous->size() || (*loaded)->size() == next->size())
                << fail_at;
            ASSERT_TRUE(previous->Save(dir).ok());
          },
          error_number);
      EXPECT_GT(operations, 15) << spec;  // five files, a manifest and the swap
    }
  }
}

// ---------------------------------------------------------------------------
// Size

TEST(KvStoreTest, FlatF16BytesPerEntryWithin30PercentOfFourHeadDim) {
  for (int d : {64, 128}) {
    auto store = MakeStore(d, "flat:dtype=f16");
    for (int i = 0; i < 10; ++i) Fill(store.get(), MakeData(Data::kGaussian, 2000, d, 29 + i));
    const double per_entry = double(store->bytes()) / store->size();
    EXPECT_GE(per_entry, 4.0 * d);  // honest: at least keys + values
    EXPECT_LE(per_entry, 1.3 * 4.0 * d) << "d=" << d;
    RecordProperty("flat_f16_bytes_per_entry_d" + std::to_string(d), std::to_string(per_entry));
  }
}

// ---------------------------------------------------------------------------
// IVF with many small lists (a two-level quantizer above 512 lists), probed by
// list estimates within a share of the keys (ivf_bounds.h, ivf_scan.h)

constexpr int64_t kManyListKeys = 70000;  // IvfListsFor: 1024 lists

// The first n of the queries q [*, d]: with n <= kIvfDecodeQueries, a
// generated token's search, planned from the uint8 table of estimates.
std::vector<float> FirstQueries(const std::vector<float>& q, int d, int n) {
  return std::vector<float>(q.begin(), q.begin() + int64_t{n} * d);
}

TEST(KvStoreTest, IvfWithManyListsAndEveryListProbedEqualsExactSearch) {
  const std::vector<float> q = MakeData(Data::kKeyLike, 20, 16, 41);
  for (const char* spec : {"ivf:max_scan=1", "ivf:max_scan=1,dtype=f32"}) {
    SCOPED_TRACE(spec);
    auto store = MakeStore(16, spec);
    Fill(store.get(), MakeData(Data::kKeyLike, kManyListKeys, 16, 40));
    EXPECT_EQ(store->index_lists(), IvfListsFor(kManyListKeys));
    const std::vector<float> token = FirstQueries(q, 16, 4);
    ExpectSameResults(Search(*store, q, 30), BruteForce(*store, q, 30), 1e-5f);
    ExpectSameResults(Search(*store, token, 30), BruteForce(*store, token, 30), 1e-5f);
    ASSERT_TRUE(store->DeleteDocument(7).ok());
    ExpectSameResults(Search(*store, q, 30), BruteForce(*store, q, 30), 1e-5f);
    ExpectSameResults(Search(*store, token, 30), BruteForce(*store, token, 30), 1e-5f);
  }
}

TEST(KvStoreTest, ExactFilterAndFullScanOverrideSearchEveryKeyOfADefaultIvfStore) {
  const std::vector<float> q = MakeData(Data::kKeyLike, 20, 16, 43);
  auto store = MakeStore(16, "ivf");
  Fill(store.get(), MakeData(Data::kKeyLike, kManyListKeys, 16, 42));
  const Results truth = BruteForce(*store, q, 30);
  SearchFilter exact;
  exact.exact = true;
  ExpectSameResults(Search(*store, q, 30, &exact), truth, 1e-5f);
  SearchFilter full;
  full.max_scan = 1;
  ExpectSameResults(Search(*store, q, 30, &full), truth, 1e-5f);
  const std::vector<float> token = FirstQueries(q, 16, 1);
  const Results token_truth = BruteForce(*store, token, 30);
  ExpectSameResults(Search(*store, token, 30, &exact), token_truth, 1e-5f);
  ExpectSameResults(Search(*store, token, 30, &full), token_truth, 1e-5f);
}

TEST(KvStoreTest, AGeneratedTokensPlanFromTheUint8TableEqualsThePlanFromEveryFloatEstimate) {
  // One budget for both: a window (40 queries) plans from every list's float
  // estimate, each single query from the uint8 table and then the float
  // estimates of the lists that can make its plan.
  const std::vector<float> q = MakeData(Data::kKeyLike, 40, 16, 51);
  auto store = MakeStore(16, "ivf");
  Fill(store.get(), MakeData(Data::kKeyLike, kManyListKeys, 16, 50));
  SearchFilter budget;
  budget.max_scan = 0.1;
  const Results window = Search(*store, q, 30, &budget);
  for (int i = 0; i < 40; ++i) {
    SCOPED_TRACE(i);
    const std::vector<float> one(q.begin() + i * 16, q.begin() + (i + 1) * 16);
    const Results token = Search(*store, one, 30, &budget);
    Results row;
    row.ids.assign(window.ids.begin() + i * 30, window.ids.begin() + (i + 1) * 30);
    row.scores.assign(window.scores.begin() + i * 30, window.scores.begin() + (i + 1) * 30);
    ExpectSameResults(token, row, 1e-5f);
  }
}

TEST(KvStoreTest, IvfPartialScanIsDeterministicAcrossStoresSavesAndLaterAppends) {
  const std::vector<float> q = MakeData(Data::kKeyLike, 40, 16, 45);
  const std::vector<float> first = MakeData(Data::kKeyLike, kManyListKeys, 16, 44);
  const std::vector<float> more = MakeData(Data::kKeyLike, 5000, 16, 46);
  auto a = MakeStore(16, "ivf"), b = MakeStore(16, "ivf");
  Fill(a.get(), first);
  Fill(b.get(), first);
  const std::vector<float> token = FirstQueries(q, 16, 4);
  const Results ra = Search(*a, q, 30), ta = Search(*a, token, 30);
  ExpectSameResults(ra, Search(*b, q, 30), 0.0f);
  ExpectSameResults(ta, Search(*b, token, 30), 0.0f);
  // Scanning 5% (2% for a token's queries) is not exact; it is close on these keys.
  EXPECT_GE(Recall(ra, BruteForce(*a, q, 30), 40, 30), 0.9);
  EXPECT_GE(Recall(ta, BruteForce(*a, token, 30), 4, 30), 0.9);

  const std::string dir = TempDir("ivf_partial");
  ASSERT_TRUE(a->Save(dir).ok());
  absl::StatusOr<std::unique_ptr<KvStore>> loaded = KvStore::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameResults(Search(**loaded, q, 30), ra, 0.0f);
  ExpectSameResults(Search(**loaded, token, 30), ta, 0.0f);
  // The loaded store's estimates, rebuilt from its lists, grow with appends
  // exactly as the original's.
  Fill(a.get(), more);
  Fill(loaded->get(), more);
  ExpectSameResults(Search(**loaded, q, 30), Search(*a, q, 30), 0.0f);
  ExpectSameResults(Search(**loaded, token, 30), Search(*a, token, 30), 0.0f);
}

TEST(KvStoreTest, SearchCountersCountQueriesKeysScoredAndListsBounded) {
  const std::vector<float> q = MakeData(Data::kGaussian, 5, 16, 48);
  auto flat = MakeStore(16, "flat");
  Fill(flat.get(), MakeData(Data::kGaussian, 1000, 16, 47));
  Search(*flat, q, 10);
  SearchCounters c = flat->search_counters();
  EXPECT_EQ(c.queries, 5);
  EXPECT_EQ(c.keys_scored, 5 * 1000);
  EXPECT_EQ(c.lists_bounded, 0);

  auto ivf = MakeStore(16, "ivf");
  Fill(ivf.get(), MakeData(Data::kKeyLike, kManyListKeys, 16, 49));
  Search(*ivf, q, 10);
  c = ivf->search_counters();
  EXPECT_EQ(c.queries, 5);
  // Five queries are a generated token's: each scores every list from the
  // uint8 table (a quarter of a float estimate's bytes), then the lists that
  // can make its plan from the float one.
  EXPECT_GT(c.lists_bounded, 0);
  EXPECT_LT(c.lists_bounded, 5 * ivf->index_lists());
  // Lists are taken until they hold the budget: at least it, at most one list more.
  const int64_t budget = IvfScanBudget(ivf->options(), kManyListKeys, 5);
  EXPECT_GE(c.keys_scored, 5 * budget);
  EXPECT_LT(c.keys_scored, 5 * (budget + kManyListKeys / 8));
}

TEST(KvStoreTest, SearchCountersAddUpTheTimeSpentSearching) {
  const std::vector<float> q = MakeData(Data::kGaussian, 5, 16, 48);
  auto flat = MakeStore(16, "flat");
  Fill(flat.get(), MakeData(Data::kGaussian, 1000, 16, 47));
  EXPECT_EQ(flat->search_counters().search_nanos, 0);
  Search(*flat, q, 10);
  const int64_t once = flat->search_counters().search_nanos;
  EXPECT_GT(once, 0);
  Search(*flat, q, 10);
  EXPECT_GT(flat->search_counters().search_nanos, once);
}

}  // namespace
}  // namespace fot
