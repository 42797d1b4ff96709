#include "memory/ivf_scan.h"

#include <cblas.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "memory/half_float.h"

namespace fot {
namespace {

using faiss_idx = faiss::Index::idx_t;
using MinHeap = faiss::CMin<float, int64_t>;  // keeps the k largest scores

// Queries scored against a list per matrix product: the block of scores
// (64 x list size) stays in cache while it is merged into the queries' heaps.
// (Scoring every list first and selecting after streamed a 33 MB score buffer
// through memory twice per store: a third of a window's time at 128k keys.)
constexpr int64_t kQueryBlock = 64;
// Lists probed by fewer queries than this are scored key by key: OpenBLAS's
// sgemm packs both operands first, which was 15% of a generated token's time
// at 1M keys.
constexpr int64_t kMinQueriesForGemm = 4;
// Scores a heap skips at once when none of them beats its top.
constexpr int64_t kOfferBlock = 32;

float Dot(const float* a, const float* b, int n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// The codes and ids of the lists a batch probes, fetched once (get_codes may
// map or copy a list) and released at the end.
class ListViews {
 public:
  explicit ListViews(const faiss::InvertedLists* lists)
      : lists_(lists), codes_(lists->nlist), ids_(lists->nlist), open_(lists->nlist, 0) {}
  ~ListViews() {
    for (size_t l = 0; l < open_.size(); ++l) {
      if (!open_[l]) continue;
      lists_->release_codes(l, codes_[l]);
      lists_->release_ids(l, ids_[l]);
    }
  }
  ListViews(const ListViews&) = delete;
  ListViews& operator=(const ListViews&) = delete;

  void Open(size_t l) {
    if (open_[l]) return;
    codes_[l] = lists_->get_codes(l);
    ids_[l] = lists_->get_ids(l);
    open_[l] = 1;
  }
  const uint8_t* codes(size_t l) const { return codes_[l]; }
  const faiss_idx* ids(size_t l) const { return ids_[l]; }

 private:
  const faiss::InvertedLists* lists_;
  std::vector<const uint8_t*> codes_;
  std::vector<const faiss_idx*> ids_;
  std::vector<char> open_;
};

// Each query's top k, kept in the caller's output rows as FAISS heaps, with
// one lock per query because the lists a query probes are scanned by
// different threads. Candidates are compared by (score, id), the heaps' own
// total order, so the result does not depend on the order lists are scanned.
class TopK {
 public:
  TopK(int64_t nq, int k, const faiss::IDSelector* selector, float* scores, int64_t* ids)
      : k_(k), selector_(selector), scores_(scores), ids_(ids), locks_(new std::atomic_flag[nq]) {
    for (int64_t q = 0; q < nq; ++q) faiss::heap_heapify<MinHeap>(k, Scores(q), Ids(q));
  }

  // Offers scores v[0..n) of the keys `list_ids` to query q.
  void Offer(int64_t q, const float* v, const faiss_idx* list_ids, int64_t n) {
    while (locks_[q].test_and_set(std::memory_order_acquire)) locks_[q].wait(true);
    float* s = Scores(q);
    int64_t* id = Ids(q);
    float worst = s[0];  // the heap's top, the score to beat
    for (int64_t j0 = 0; j0 < n; j0 += kOfferBlock) {
      const int64_t end = std::min(n, j0 + kOfferBlock);
      // Once the heap is full few scores beat it: skip whole blocks at SIMD speed.
      float best = v[j0];
#pragma omp simd reduction(max : best)
      for (int64_t j = j0 + 1; j < end; ++j) best = std::max(best, v[j]);
      if (best < worst) continue;
      for (int64_t j = j0; j < end; ++j) {
        if (v[j] < worst || (v[j] == worst && list_ids[j] <= id[0])) continue;
        if (selector_ != nullptr && !selector_->is_member(list_ids[j])) continue;
        faiss::heap_replace_top<MinHeap>(k_, s, id, v[j], list_ids[j]);
        worst = s[0];
      }
    }
    locks_[q].clear(std::memory_order_release);
    locks_[q].notify_one();
  }

  // Best first; unfilled entries get id -1.
  void Finish(int64_t nq) {
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < nq; ++q) faiss::heap_reorder<MinHeap>(k_, Scores(q), Ids(q));
  }

 private:
  float* Scores(int64_t q) { return scores_ + q * k_; }
  int64_t* Ids(int64_t q) { return ids_ + q * k_; }

  const int k_;
  const faiss::IDSelector* selector_;
  float* scores_;
  int64_t* ids_;
  std::unique_ptr<std::atomic_flag[]> locks_;
};

// The lists a batch probes, each with the queries probing it.
struct ProbedLists {
  struct List {
    int64_t list, size;          // list number, entries
    int64_t first_query, count;  // its queries in `queries`
  };
  std::vector<List> lists;
  std::vector<int64_t> queries;
  int64_t max_size = 0, max_count = 0;
};

ProbedLists GroupByList(const faiss::InvertedLists& invlists, const faiss_idx* probes, int64_t nq,
                        int nprobe) {
  std::vector<int64_t> count(invlists.nlist, 0);
  for (int64_t i = 0; i < nq * nprobe; ++i) {
    if (probes[i] >= 0) ++count[probes[i]];
  }
  ProbedLists g;
  std::vector<int64_t> at(invlists.nlist, -1);  // list -> next free slot in g.queries
  int64_t total = 0;
  for (size_t l = 0; l < invlists.nlist; ++l) {
    const auto size = static_cast<int64_t>(invlists.list_size(l));
    if (count[l] == 0 || size == 0) continue;
    g.lists.push_back({static_cast<int64_t>(l), size, total, count[l]});
    g.max_size = std::max(g.max_size, size);
    g.max_count = std::max(g.max_count, count[l]);
    at[l] = total;
    total += count[l];
  }
  g.queries.resize(total);
  for (int64_t q = 0; q < nq; ++q) {
    for (int p = 0; p < nprobe; ++p) {
      const faiss_idx l = probes[q * nprobe + p];
      if (l >= 0 && at[l] >= 0) g.queries[at[l]++] = q;
    }
  }
  return g;
}

}  // namespace

void IvfScan(const faiss::IndexIVF& index, bool fp16_codes, const IvfScanRequest& r, float* scores,
             int64_t* ids) {
  const int nprobe = static_cast<int>(std::min<int64_t>(r.nprobe, index.nlist));
  std::vector<faiss_idx> probes(r.nq * nprobe);
  {
    std::vector<float> coarse_distances(r.nq * nprobe);
    index.quantizer->search(r.nq, r.coarse_queries, nprobe, coarse_distances.data(), probes.data());
  }
  const ProbedLists g = GroupByList(*index.invlists, probes.data(), r.nq, nprobe);
  ListViews views(index.invlists);
  for (const ProbedLists::List& l : g.lists) views.Open(l.list);
  TopK top(r.nq, r.k, r.selector, scores, ids);

  // Per-thread buffers, allocated here (nothing may throw inside the region)
  // and uninitialised: zeroing them cost more than the scan of one query.
  const int dim = r.dim, stride = static_cast<int>(index.d);
  const int threads = omp_get_max_threads();
  const int64_t block_rows = std::min(kQueryBlock, g.max_count);
  const int64_t keys_per_thread = fp16_codes ? g.max_size * dim : 0;  // f32 codes: read in place
  auto keys = std::make_unique_for_overwrite<float[]>(threads * keys_per_thread + 1);
  auto queries = std::make_unique_for_overwrite<float[]>(threads * block_rows * dim + 1);
  auto block = std::make_unique_for_overwrite<float[]>(threads * block_rows * g.max_size + 1);
  const auto n_lists = static_cast<int64_t>(g.lists.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n_lists; ++i) {
    const ProbedLists::List& l = g.lists[i];
    const int t = omp_get_thread_num();
    const uint8_t* codes = views.codes(l.list);
    const faiss_idx* list_ids = views.ids(l.list);
    const int64_t* list_queries = &g.queries[l.first_query];
    const auto* f32 = reinterpret_cast<const float*>(codes);
    const auto* f16 = reinterpret_cast<const uint16_t*>(codes);
    float* decoded = keys.get() + t * keys_per_thread;
    float* q = queries.get() + t * block_rows * dim;
    float* v = block.get() + t * block_rows * g.max_size;
    if (l.count < kMinQueriesForGemm) {
      // One pass over the codes: each key decoded into L1 and dotted with the
      // list's few queries. (sgemm would first pack the whole list.)
      for (int64_t j = 0; j < l.size; ++j) {
        const float* key = f32 + j * stride;
        if (fp16_codes) {
          HalfToFloatRow(f16 + j * stride, dim, decoded);
          key = decoded;
        }
        for (int64_t m = 0; m < l.count; ++m) {
          v[m * l.size + j] = Dot(r.queries + list_queries[m] * dim, key, dim);
        }
      }
      for (int64_t m = 0; m < l.count; ++m)
        top.Offer(list_queries[m], v + m * l.size, list_ids, l.size);
      continue;
    }
    const float* k = f32;
    int ldk = stride;
    if (fp16_codes) {
      for (int64_t j = 0; j < l.size; ++j) HalfToFloatRow(f16 + j * stride, dim, decoded + j * dim);
      k = decoded;
      ldk = dim;
    }
    for (int64_t m0 = 0; m0 < l.count; m0 += block_rows) {
      const int64_t rows = std::min(block_rows, l.count - m0);
      for (int64_t m = 0; m < rows; ++m) {
        std::copy_n(r.queries + list_queries[m0 + m] * dim, dim, q + m * dim);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
                  static_cast<int>(l.size), dim, 1.0f, q, dim, k, ldk, 0.0f, v,
                  static_cast<int>(l.size));
      for (int64_t m = 0; m < rows; ++m) {
        top.Offer(list_queries[m0 + m], v + m * l.size, list_ids, l.size);
      }
    }
  }
  top.Finish(r.nq);
}

}  // namespace fot
