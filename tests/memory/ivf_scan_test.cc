// Behaviour of the list-major IVF scan: with every list probed it returns
// exactly what a brute-force inner-product search returns, in (score, id)
// order, whatever the batch size, k, ties, id filter or code type.
#include "memory/ivf_scan.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/IDSelector.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "memory/ivf_bounds.h"

namespace fot {
namespace {

constexpr int kDim = 16;

struct Result {
  std::vector<float> scores;
  std::vector<int64_t> ids;
};

// Keys drawn from a few values per coordinate, so that many inner products
// tie exactly (and duplicated keys tie on every query).
std::vector<float> MakeKeys(int64_t n, uint32_t seed, int distinct_values) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-distinct_values, distinct_values);
  std::vector<float> x(n * kDim);
  for (float& v : x) v = 0.25f * static_cast<float>(pick(rng));
  return x;
}

// Top k by (score, id), higher first; unfilled rows get -inf / -1.
Result BruteForce(const std::vector<float>& keys, const std::vector<float>& queries, int k,
                  const faiss::IDSelector* selector) {
  const int64_t n = static_cast<int64_t>(keys.size()) / kDim;
  const int64_t nq = static_cast<int64_t>(queries.size()) / kDim;
  Result r{std::vector<float>(nq * k, -std::numeric_limits<float>::infinity()),
           std::vector<int64_t>(nq * k, -1)};
  for (int64_t q = 0; q < nq; ++q) {
    std::vector<std::pair<float, int64_t>> all;
    for (int64_t i = 0; i < n; ++i) {
      if (selector != nullptr && !selector->is_member(i)) continue;
      float s = 0.0f;
      for (int j = 0; j < kDim; ++j) s += queries[q * kDim + j] * keys[i * kDim + j];
      all.emplace_back(s, i);
    }
    std::sort(all.begin(), all.end(), std::greater<>());
    for (int64_t j = 0; j < std::min<int64_t>(k, static_cast<int64_t>(all.size())); ++j) {
      r.scores[q * k + j] = all[j].first;
      r.ids[q * k + j] = all[j].second;
    }
  }
  return r;
}

// An IVF index over `keys` (ids 0..n-1) with `nlist` lists: f32 codes, or
// fp16 codes when `fp16`. The keys are exact in fp16 (multiples of 1/4).
std::unique_ptr<faiss::IndexIVF> MakeIndex(const std::vector<float>& keys, int nlist, bool fp16,
                                           faiss::IndexFlatL2* quantizer) {
  std::unique_ptr<faiss::IndexIVF> index;
  if (fp16) {
    index = std::make_unique<faiss::IndexIVFScalarQuantizer>(
        quantizer, kDim, nlist, faiss::ScalarQuantizer::QT_fp16, faiss::METRIC_L2,
        /*encode_residual=*/false);
  } else {
    index = std::make_unique<faiss::IndexIVFFlat>(quantizer, kDim, nlist);
  }
  const int64_t n = static_cast<int64_t>(keys.size()) / kDim;
  index->train(n, keys.data());
  std::vector<faiss::Index::idx_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  index->add_with_ids(n, keys.data(), ids.data());
  return index;
}

Result Scan(const faiss::IndexIVF& index, bool fp16, const std::vector<float>& queries, int k,
            const faiss::IDSelector* selector) {
  const int64_t nq = static_cast<int64_t>(queries.size()) / kDim;
  const IvfBounds bounds = IvfBounds::Build(index, fp16, kDim);
  IvfScanRequest request;
  request.queries = queries.data();
  request.nq = nq;
  request.dim = kDim;
  request.bounds = &bounds;
  request.max_lists = static_cast<int64_t>(index.nlist);  // every list: exact
  request.max_keys = index.ntotal;
  request.k = k;
  request.selector = selector;
  Result r{std::vector<float>(nq * k), std::vector<int64_t>(nq * k)};
  IvfScan(index, fp16, request, r.scores.data(), r.ids.data());
  return r;
}

void ExpectEqual(const Result& expected, const Result& got) {
  ASSERT_EQ(expected.ids.size(), got.ids.size());
  for (size_t i = 0; i < expected.ids.size(); ++i) {
    ASSERT_EQ(expected.ids[i], got.ids[i]) << "at " << i;
    ASSERT_EQ(expected.scores[i], got.scores[i]) << "at " << i;
  }
}

TEST(IvfScanTest, AllListsProbedEqualsBruteForceWithTiesForEveryBatchSizeAndCodeType) {
  const std::vector<float> keys = MakeKeys(3000, 1, 2);  // 5 values per coordinate: many ties
  for (const bool fp16 : {false, true}) {
    faiss::IndexFlatL2 quantizer(kDim);
    const auto index = MakeIndex(keys, 16, fp16, &quantizer);
    // 1 and 3 queries take the key-by-key path; 200 the blocked sgemm path.
    for (const int64_t nq : {1, 3, 200}) {
      const std::vector<float> queries = MakeKeys(nq, 2, 3);
      for (const int k : {1, 10, 128}) {
        SCOPED_TRACE(testing::Message() << "fp16 " << fp16 << " nq " << nq << " k " << k);
        ExpectEqual(BruteForce(keys, queries, k, nullptr), Scan(*index, fp16, queries, k, nullptr));
      }
    }
  }
}

TEST(IvfScanTest, ManyExactTiesKeepTheHighestIds) {
  // 40 distinct keys repeated 50 times: each query sees blocks of 50 equal
  // scores, more than the buffer can hold above any sampled threshold.
  const std::vector<float> distinct = MakeKeys(40, 3, 1);
  std::vector<float> keys;
  for (int rep = 0; rep < 50; ++rep) keys.insert(keys.end(), distinct.begin(), distinct.end());
  faiss::IndexFlatL2 quantizer(kDim);
  const auto index = MakeIndex(keys, 8, false, &quantizer);
  const std::vector<float> queries = MakeKeys(64, 4, 2);
  for (const int k : {7, 64, 300}) {
    SCOPED_TRACE(testing::Message() << "k " << k);
    ExpectEqual(BruteForce(keys, queries, k, nullptr), Scan(*index, false, queries, k, nullptr));
  }
}

TEST(IvfScanTest, PadsRowsWhenFewerThanKEntriesPass) {
  const std::vector<float> keys = MakeKeys(100, 5, 4);
  faiss::IndexFlatL2 quantizer(kDim);
  const auto index = MakeIndex(keys, 4, true, &quantizer);
  const std::vector<float> queries = MakeKeys(10, 6, 4);
  const Result got = Scan(*index, true, queries, 150, nullptr);
  ExpectEqual(BruteForce(keys, queries, 150, nullptr), got);
  for (int64_t q = 0; q < 10; ++q) {
    EXPECT_GE(got.ids[q * 150 + 99], 0);  // all 100 entries found
    EXPECT_EQ(got.ids[q * 150 + 100], -1);
    EXPECT_EQ(got.scores[q * 150 + 149], -std::numeric_limits<float>::infinity());
  }
}

TEST(IvfScanTest, SelectorRestrictsResultsToItsIds) {
  const std::vector<float> keys = MakeKeys(2000, 7, 3);
  faiss::IndexFlatL2 quantizer(kDim);
  const auto index = MakeIndex(keys, 16, false, &quantizer);
  const faiss::IDSelectorRange upper_half(1000, 2000);
  const std::vector<float> queries = MakeKeys(100, 8, 3);
  const Result got = Scan(*index, false, queries, 32, &upper_half);
  ExpectEqual(BruteForce(keys, queries, 32, &upper_half), got);
  for (const int64_t id : got.ids) EXPECT_GE(id, 1000);
}

}  // namespace
}  // namespace fot
