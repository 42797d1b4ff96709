#include "memory/ivf_quantizer.h"

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/invlists/InvertedLists.h>

#include <algorithm>
#include <bit>
#include <limits>
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

float L2Squared(const float* a, const float* b, int d) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < d; ++i) {
    const float t = a[i] - b[i];
    sum += t * t;
  }
  return sum;
}

// The nearest of rows [count, d] to p (the first of equals), and its distance.
std::pair<int64_t, float> Nearest(const float* p, const float* rows, int64_t count, int d) {
  std::pair<int64_t, float> best{-1, std::numeric_limits<float>::infinity()};
  for (int64_t j = 0; j < count; ++j) {
    const float dist = L2Squared(p, rows + j * d, d);
    if (dist < best.second) best = {j, dist};
  }
  return best;
}

// The list of p under a two-level quantizer: the nearest list centroid in
// its `probes` nearest coarse clusters, scanned nearest first. `order` is
// scratch of the coarse clusters' size.
int64_t NearestList(const faiss::IndexIVFFlat& quantizer, const float* coarse, int64_t probes,
                    const float* p, std::vector<std::pair<float, int64_t>>* order) {
  const int d = static_cast<int>(quantizer.d);
  for (int64_t c = 0; c < static_cast<int64_t>(order->size()); ++c) {
    (*order)[c] = {L2Squared(p, coarse + c * d, d), c};
  }
  std::partial_sort(order->begin(), order->begin() + probes, order->end());
  int64_t best = -1;
  float best_dist = std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < probes; ++i) {
    const int64_t c = (*order)[i].second;
    const faiss::InvertedLists* lists = quantizer.invlists;
    faiss::InvertedLists::ScopedCodes codes(lists, c);
    faiss::InvertedLists::ScopedIds ids(lists, c);
    const auto [j, dist] = Nearest(p, reinterpret_cast<const float*>(codes.get()),
                                   static_cast<int64_t>(lists->list_size(c)), d);
    if (j >= 0 && dist < best_dist) best = ids[j], best_dist = dist;
  }
  return best;
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

void AssignToLists(const faiss::Index& quantizer, const float* x, int64_t n, int64_t* lists) {
  const auto* two_level = dynamic_cast<const faiss::IndexIVFFlat*>(&quantizer);
  const auto* flat =
      dynamic_cast<const faiss::IndexFlat*>(two_level ? two_level->quantizer : &quantizer);
  if (flat == nullptr || flat->metric_type != faiss::METRIC_L2 ||
      (two_level != nullptr && two_level->metric_type != faiss::METRIC_L2)) {
    quantizer.assign(n, x, lists);
    return;
  }
  const int d = static_cast<int>(quantizer.d);
  const float* centroids = flat->get_xb();
  const int64_t count = flat->ntotal;
  const int64_t probes = two_level ? std::min<int64_t>(two_level->nprobe, count) : 0;
#pragma omp parallel if (n > 16)
  {
    std::vector<std::pair<float, int64_t>> order(two_level ? count : 0);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* p = x + i * d;
      lists[i] = two_level ? NearestList(*two_level, centroids, probes, p, &order)
                           : Nearest(p, centroids, count, d).first;
    }
  }
}

}  // namespace fot
