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

constexpr int kBlock = 16;

ListAssigner::Group MakeGroup(int d, const float* rows, const int64_t* ids, int64_t count) {
  ListAssigner::Group g;
  g.count = count;
  g.ids.assign(ids, ids + count);
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  // Padding centroids at +inf are never nearer than a real one.
  g.blocks.assign(blocks * d * kBlock, std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < count; ++i) {
    for (int k = 0; k < d; ++k)
      g.blocks[((i / kBlock) * d + k) * kBlock + i % kBlock] = rows[i * d + k];
  }
  return g;
}

// Squared distances of p to every centroid of g, into dist [blocks * 16]:
// each sums (p_k - c_k)^2 in the order of k, whatever the block.
void Distances(const ListAssigner::Group& g, int d, const float* p, float* dist) {
  const int64_t blocks = static_cast<int64_t>(g.blocks.size()) / (d * kBlock);
  for (int64_t b = 0; b < blocks; ++b) {
    float acc[kBlock] = {};
    const float* c = &g.blocks[b * d * kBlock];
    for (int k = 0; k < d; ++k) {
#pragma omp simd
      for (int j = 0; j < kBlock; ++j) {
        const float t = p[k] - c[k * kBlock + j];
        acc[j] += t * t;
      }
    }
    std::copy_n(acc, kBlock, dist + b * kBlock);
  }
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
  std::vector<int64_t> first(coarse_n + 1, 0);  // cluster c's lists start at first[c]
  for (int64_t c = 0; c < coarse_n; ++c) first[c + 1] = first[c] + lists[c];
  std::vector<float> fine(first[coarse_n] * d);
  // One cluster per thread: each k-means is small, and FAISS's own threads
  // (and BLAS's) would mostly wait on each other.
#pragma omp parallel
  {
    std::vector<float> points;
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < coarse_n; ++c) {
      if (lists[c] == 0) continue;
      points.resize(members[c].size() * d);
      for (size_t i = 0; i < members[c].size(); ++i) {
        std::copy_n(x + members[c][i] * d, d, &points[i * d]);
      }
      KMeans(d, static_cast<int64_t>(members[c].size()), points.data(), lists[c],
             &fine[first[c] * d]);
    }
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

std::unique_ptr<ListAssigner> ListAssigner::For(const faiss::Index& quantizer) {
  const auto* two_level = dynamic_cast<const faiss::IndexIVFFlat*>(&quantizer);
  const auto* flat =
      dynamic_cast<const faiss::IndexFlat*>(two_level ? two_level->quantizer : &quantizer);
  if (flat == nullptr || flat->metric_type != faiss::METRIC_L2 ||
      (two_level != nullptr && two_level->metric_type != faiss::METRIC_L2)) {
    return nullptr;
  }
  const int d = static_cast<int>(quantizer.d);
  const int64_t count = flat->ntotal;
  std::vector<int64_t> numbers(count);
  for (int64_t i = 0; i < count; ++i) numbers[i] = i;
  std::unique_ptr<ListAssigner> a(
      new ListAssigner(d, two_level ? std::min<int64_t>(two_level->nprobe, count) : 0));
  a->coarse_ = MakeGroup(d, flat->get_xb(), numbers.data(), count);
  if (two_level == nullptr) return a;
  const faiss::InvertedLists* lists = two_level->invlists;
  for (int64_t c = 0; c < count; ++c) {
    faiss::InvertedLists::ScopedCodes codes(lists, c);
    faiss::InvertedLists::ScopedIds ids(lists, c);
    a->lists_.push_back(MakeGroup(d, reinterpret_cast<const float*>(codes.get()), ids.get(),
                                  static_cast<int64_t>(lists->list_size(c))));
  }
  return a;
}

void ListAssigner::Assign(const float* x, int64_t n, int64_t* lists) const {
  int64_t widest = coarse_.count;
  for (const Group& g : lists_) widest = std::max(widest, g.count);
#pragma omp parallel if (n > 16)
  {
    std::vector<float> dist(widest + kBlock);
    std::vector<std::pair<float, int64_t>> order(coarse_.count);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* p = x + i * d_;
      Distances(coarse_, d_, p, dist.data());
      if (probes_ == 0) {
        lists[i] =
            coarse_
                .ids[std::min_element(dist.begin(), dist.begin() + coarse_.count) - dist.begin()];
        continue;
      }
      for (int64_t c = 0; c < coarse_.count; ++c) order[c] = {dist[c], c};
      std::partial_sort(order.begin(), order.begin() + probes_, order.end());
      int64_t best = -1;
      float best_dist = std::numeric_limits<float>::infinity();
      for (int64_t r = 0; r < probes_; ++r) {
        const Group& g = lists_[order[r].second];
        Distances(g, d_, p, dist.data());
        for (int64_t j = 0; j < g.count; ++j) {
          if (dist[j] < best_dist) best = g.ids[j], best_dist = dist[j];
        }
      }
      lists[i] = best;
    }
  }
}

}  // namespace fot
