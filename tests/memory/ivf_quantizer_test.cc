// Behaviour of the IVF quantizer's own key assignment (ListAssigner): it
// picks the list FAISS's assign picks, and a key's list does not depend on
// the keys assigned with it.
#include "memory/ivf_quantizer.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

constexpr int kDim = 18;  // a head of 16 plus the two coordinates of the reduction

// Clustered points, as keys are: a few centres plus noise.
std::vector<float> MakePoints(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  std::vector<float> centres(32 * kDim);
  for (float& c : centres) c = 4.0f * noise(rng);
  std::uniform_int_distribution<int> pick(0, 31);
  std::vector<float> x(n * kDim);
  for (int64_t i = 0; i < n; ++i) {
    const int c = pick(rng);
    for (int j = 0; j < kDim; ++j) x[i * kDim + j] = centres[c * kDim + j] + noise(rng);
  }
  return x;
}

// Centroid `list` of a flat quantizer, or of a two-level one (found in the
// coarse cluster that holds it).
std::vector<float> Centroid(const faiss::Index& quantizer, int64_t list) {
  std::vector<float> centroid(kDim);
  const auto* two_level = dynamic_cast<const faiss::IndexIVFFlat*>(&quantizer);
  if (two_level == nullptr) {
    quantizer.reconstruct(list, centroid.data());
    return centroid;
  }
  const faiss::InvertedLists* lists = two_level->invlists;
  for (size_t c = 0; c < lists->nlist; ++c) {
    for (size_t j = 0; j < lists->list_size(c); ++j) {
      if (lists->get_single_id(c, j) != list) continue;
      const auto* code = reinterpret_cast<const float*>(lists->get_single_code(c, j));
      centroid.assign(code, code + kDim);
      lists->release_codes(c, reinterpret_cast<const uint8_t*>(code));
      return centroid;
    }
  }
  ADD_FAILURE() << "no centroid " << list;
  return centroid;
}

float Distance(const faiss::Index& quantizer, const float* p, int64_t list) {
  const std::vector<float> centroid = Centroid(quantizer, list);
  float sum = 0.0f;
  for (int j = 0; j < kDim; ++j) sum += (p[j] - centroid[j]) * (p[j] - centroid[j]);
  return sum;
}

// Each point gets FAISS's list, or one at the same distance up to rounding.
void ExpectFaissLists(const faiss::Index& quantizer, const std::vector<float>& x,
                      const std::vector<int64_t>& ours) {
  const int64_t n = static_cast<int64_t>(x.size()) / kDim;
  std::vector<faiss::Index::idx_t> theirs(n);
  quantizer.assign(n, x.data(), theirs.data());
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_GE(ours[i], 0) << "point " << i;
    if (ours[i] == theirs[i]) continue;
    ++differ;
    const float a = Distance(quantizer, &x[i * kDim], ours[i]);
    const float b = Distance(quantizer, &x[i * kDim], theirs[i]);
    EXPECT_NEAR(a, b, 1e-4f * std::max(1.0f, b)) << "point " << i;
  }
  EXPECT_LE(differ, n / 1000) << "more than rounding apart";
}

TEST(IvfQuantizerTest, TwoLevelAssignmentPicksTheListFaissPicks) {
  const std::vector<float> train = MakePoints(40000, 1);
  const std::unique_ptr<faiss::Index> quantizer =
      TrainTwoLevelQuantizer(kDim, 1024, train.data(), 40000);
  const std::vector<float> x = MakePoints(5000, 2);
  std::vector<int64_t> lists(5000);
  ListAssigner::For(*quantizer)->Assign(x.data(), 5000, lists.data());
  ExpectFaissLists(*quantizer, x, lists);
}

TEST(IvfQuantizerTest, FlatAssignmentPicksTheListFaissPicks) {
  faiss::IndexFlatL2 quantizer(kDim);
  const std::vector<float> centroids = MakePoints(300, 3);
  quantizer.add(300, centroids.data());
  const std::vector<float> x = MakePoints(3000, 4);
  std::vector<int64_t> lists(3000);
  ListAssigner::For(quantizer)->Assign(x.data(), 3000, lists.data());
  ExpectFaissLists(quantizer, x, lists);
}

TEST(IvfQuantizerTest, APointsListDoesNotDependOnThePointsAssignedWithIt) {
  const std::vector<float> train = MakePoints(20000, 5);
  const std::unique_ptr<faiss::Index> quantizer =
      TrainTwoLevelQuantizer(kDim, 1024, train.data(), 20000);
  const int64_t n = 1000;
  const std::vector<float> x = MakePoints(n, 6);
  const std::unique_ptr<ListAssigner> assigner = ListAssigner::For(*quantizer);
  std::vector<int64_t> all(n);
  assigner->Assign(x.data(), n, all.data());
  for (int64_t batch : {1, 7, 128}) {
    std::vector<int64_t> batched(n);
    for (int64_t i = 0; i < n; i += batch) {
      assigner->Assign(&x[i * kDim], std::min(batch, n - i), &batched[i]);
    }
    EXPECT_EQ(batched, all) << "batches of " << batch;
  }
}

TEST(IvfQuantizerTest, OtherQuantizersAreLeftToFaiss) {
  faiss::IndexFlatIP inner_product(kDim);
  EXPECT_EQ(ListAssigner::For(inner_product), nullptr);
}

TEST(IvfQuantizerTest, RepeatedCentroidsLeaveTheirListsEmpty) {
  // Fewer points than lists: the missing centroids repeat others, and a
  // point always goes to the first of equal centroids.
  const std::vector<float> train = MakePoints(600, 7);
  const std::unique_ptr<faiss::Index> quantizer =
      TrainTwoLevelQuantizer(kDim, 1024, train.data(), 600);
  const std::vector<float> x = MakePoints(2000, 8);
  std::vector<int64_t> lists(2000);
  ListAssigner::For(*quantizer)->Assign(x.data(), 2000, lists.data());
  for (int64_t l : lists) EXPECT_LT(l, 600);
}

}  // namespace
}  // namespace fot
