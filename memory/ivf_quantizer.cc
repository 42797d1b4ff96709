#include "memory/ivf_quantizer.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>

#include <algorithm>
#include <bit>
#include <utility>
#include <vector>

namespace fot {

using faiss_idx = faiss::Index::idx_t;

namespace {

// k-means of n points [n, d] into k centroids [k, d], FAISS's Clustering;
// n >= k. Deterministic (fixed seed).
void KMeans(int d, int64_t n, const float* x, int64_t k, float* centroids) {
  faiss::ClusteringParameters cp;
  cp.niter = kIvfKmeansIterations;
  cp.min_points_per_centroid = 1;  // few points per centroid are fine here: no warning
  faiss::Clustering clustering(d, k, cp);
  faiss::IndexFlatL2 assigner(d);
  clustering.train(n, x, assigner);
  std::copy_n(clustering.centroids.data(), k * d, centroids);
}

}  // namespace

std::unique_ptr<faiss::Index> TrainTwoLevelQuantizer(int d, int nlist, const float* x, int64_t n) {
  const int64_t coarse_n = int64_t{1} << (std::bit_width(static_cast<uint64_t>(nlist)) / 2);
  std::vector<float> coarse(coarse_n * d);
  KMeans(d, n, x, coarse_n, coarse.data());
  auto coarse_index = std::make_unique<faiss::IndexFlatL2>(d);
  coarse_index->add(coarse_n, coarse.data());
  std::vector<faiss_idx> label(n);
  std::vector<float> distance(n);
  coarse_index->search(n, x, 1, distance.data(), label.data());
  std::vector<std::vector<int64_t>> members(coarse_n);
  for (int64_t i = 0; i < n; ++i) members[label[i]].push_back(i);
  // Lists per cluster: nlist in proportion to its points (largest
  // remainders), at most its points.
  std::vector<int64_t> lists(coarse_n);
  std::vector<std::pair<double, int64_t>> remainder(coarse_n);
  int64_t given = 0;
  for (int64_t c = 0; c < coarse_n; ++c) {
    const double share = static_cast<double>(nlist) * members[c].size() / n;
    lists[c] = std::min<int64_t>(static_cast<int64_t>(share), members[c].size());
    remainder[c] = {share - lists[c], -c};
    given += lists[c];
  }
  std::sort(remainder.rbegin(), remainder.rend());
  for (int64_t i = 0; given < nlist && i < coarse_n; ++i) {
    const int64_t c = -remainder[i].second;
    if (lists[c] < static_cast<int64_t>(members[c].size())) ++lists[c], ++given;
  }
  std::vector<float> fine, points;
  for (int64_t c = 0; c < coarse_n; ++c) {
    if (lists[c] == 0) continue;
    points.resize(members[c].size() * d);
    for (size_t i = 0; i < members[c].size(); ++i) {
      std::copy_n(x + members[c][i] * d, d, &points[i * d]);
    }
    const size_t at = fine.size();
    fine.resize(at + lists[c] * d);
    KMeans(d, static_cast<int64_t>(members[c].size()), points.data(), lists[c], &fine[at]);
  }
  // Too few points for nlist lists (n < nlist): repeat centroids; the extra
  // lists stay empty, which searches skip.
  for (int64_t l = given; l < nlist; ++l) fine.insert(fine.end(), fine.begin(), fine.begin() + d);
  auto quantizer = std::make_unique<faiss::IndexIVFFlat>(coarse_index.release(), d, coarse_n);
  quantizer->own_fields = true;
  quantizer->nprobe = std::min<int64_t>(kQuantizerProbes, coarse_n);
  quantizer->add(nlist, fine.data());  // list l has id l
  return quantizer;
}

}  // namespace fot
