#include "memory/ivf_scan.h"

#include <cblas.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/Heap.h>
#include <omp.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "memory/half_float.h"

namespace fot {
namespace {

using faiss_idx = faiss::Index::idx_t;
using MinHeap = faiss::CMin<float, int64_t>;  // keeps the k largest scores

// Scores held at once (floats); bigger batches are scanned in query chunks.
constexpr int64_t kMaxScoresPerChunk = int64_t{8} << 20;  // 32 MB
// Lists probed by fewer queries than this are scored key by key: OpenBLAS's
// sgemm packs both operands first, which was 15% of a generated token's time
// at 1M keys.
constexpr int64_t kMinQueriesForGemm = 4;

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

// One chunk of queries [q0, q1): every probed list scored against its queries
// with one sgemm, then each query's top k picked from its rows.
class ChunkScan {
 public:
  ChunkScan(const faiss::IndexIVF& index, bool fp16_codes, const IvfScanRequest& r,
            const faiss_idx* probes, int nprobe, ListViews* views)
      : index_(index), fp16_(fp16_codes), r_(r), probes_(probes), nprobe_(nprobe), views_(views) {}

  void Run(int64_t q0, int64_t q1, float* scores, int64_t* ids) {
    Group(q0, q1);
    ScoreLists();
    SelectTopK(q0, q1, scores, ids);
  }

 private:
  // Lists probed by the chunk, the queries of each (CSR), and where each
  // (query, probe) row of scores lives.
  void Group(int64_t q0, int64_t q1) {
    const faiss::InvertedLists* lists = index_.invlists;
    std::vector<int64_t> count(lists->nlist, 0);
    for (int64_t i = q0 * nprobe_; i < q1 * nprobe_; ++i) {
      if (probes_[i] >= 0) ++count[probes_[i]];
    }
    active_.clear();
    std::vector<int64_t> slot(lists->nlist, -1);
    for (size_t l = 0; l < lists->nlist; ++l) {
      if (count[l] == 0 || lists->list_size(l) == 0) continue;
      slot[l] = static_cast<int64_t>(active_.size());
      active_.push_back(
          {static_cast<int64_t>(l), static_cast<int64_t>(lists->list_size(l)), 0, 0, 0});
    }
    int64_t query_at = 0, score_at = 0;
    for (ActiveList& a : active_) {
      a.first_query = query_at;
      a.first_score = score_at;
      query_at += count[a.list];
      score_at += count[a.list] * a.size;
      views_->Open(a.list);
    }
    list_queries_.assign(query_at, 0);
    row_of_.assign((q1 - q0) * nprobe_, -1);
    for (int64_t q = q0; q < q1; ++q) {
      for (int p = 0; p < nprobe_; ++p) {
        const faiss_idx l = probes_[q * nprobe_ + p];
        if (l < 0 || slot[l] < 0) continue;
        ActiveList& a = active_[slot[l]];
        list_queries_[a.first_query + a.filled] = q;
        row_of_[(q - q0) * nprobe_ + p] = a.first_score + a.filled * a.size;
        ++a.filled;
      }
    }
    if (buffer_size_ < score_at) {
      buffer_ = std::make_unique_for_overwrite<float[]>(score_at);
      buffer_size_ = score_at;
    }
  }

  void ScoreLists() {
    const int dim = r_.dim, stride = static_cast<int>(index_.d);
    int64_t max_size = 0, max_queries = 0;
    for (const ActiveList& a : active_) {
      max_size = std::max(max_size, a.size);
      max_queries = std::max(max_queries, a.filled);
    }
    // Per-thread buffers, allocated here: nothing may throw inside the region.
    const int threads = omp_get_max_threads();
    // Uninitialised: zeroing them cost more than the scan for one query.
    const int64_t keys_per_thread = fp16_ ? max_size * dim : 0;  // f32 codes are read in place
    auto keys = std::make_unique_for_overwrite<float[]>(threads * keys_per_thread + 1);
    auto queries = std::make_unique_for_overwrite<float[]>(threads * max_queries * dim);
    const int64_t n_active = static_cast<int64_t>(active_.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n_active; ++i) {
      const ActiveList& a = active_[i];
      const int t = omp_get_thread_num();
      float* q = queries.get() + t * max_queries * dim;
      for (int64_t j = 0; j < a.filled; ++j) {
        std::copy_n(r_.queries + list_queries_[a.first_query + j] * dim, dim, q + j * dim);
      }
      const uint8_t* codes = views_->codes(a.list);
      const auto* f32 = reinterpret_cast<const float*>(codes);
      const auto* f16 = reinterpret_cast<const uint16_t*>(codes);
      float* decoded = keys.get() + t * keys_per_thread;
      float* scores = &buffer_[a.first_score];
      if (a.filled < kMinQueriesForGemm) {
        // One pass over the codes: each key decoded into L1 and dotted with
        // the list's few queries. (sgemm would first pack the whole list.)
        for (int64_t j = 0; j < a.size; ++j) {
          const float* key = f32 + j * stride;
          if (fp16_) {
            HalfToFloatRow(f16 + j * stride, dim, decoded);
            key = decoded;
          }
          for (int64_t m = 0; m < a.filled; ++m)
            scores[m * a.size + j] = Dot(q + m * dim, key, dim);
        }
        continue;
      }
      const float* k = f32;
      int ldk = stride;
      if (fp16_) {
        for (int64_t j = 0; j < a.size; ++j)
          HalfToFloatRow(f16 + j * stride, dim, decoded + j * dim);
        k = decoded;
        ldk = dim;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(a.filled),
                  static_cast<int>(a.size), dim, 1.0f, q, dim, k, ldk, 0.0f, scores,
                  static_cast<int>(a.size));
    }
  }

  void SelectTopK(int64_t q0, int64_t q1, float* scores, int64_t* ids) {
    const int k = r_.k;
    const faiss::IDSelector* sel = r_.selector;
#pragma omp parallel for schedule(static)
    for (int64_t q = q0; q < q1; ++q) {
      float* s = scores + q * k;
      int64_t* id = ids + q * k;
      faiss::heap_heapify<MinHeap>(k, s, id);
      for (int p = 0; p < nprobe_; ++p) {
        const int64_t row = row_of_[(q - q0) * nprobe_ + p];
        if (row < 0) continue;
        const faiss_idx l = probes_[q * nprobe_ + p];
        const int64_t size = static_cast<int64_t>(index_.invlists->list_size(l));
        const float* v = &buffer_[row];
        const faiss_idx* list_ids = views_->ids(l);
        for (int64_t j = 0; j < size; ++j) {
          if (!(v[j] > s[0])) continue;
          if (sel != nullptr && !sel->is_member(list_ids[j])) continue;
          faiss::heap_replace_top<MinHeap>(k, s, id, v[j], list_ids[j]);
        }
      }
      faiss::heap_reorder<MinHeap>(k, s, id);
    }
  }

  struct ActiveList {
    int64_t list, size;  // list number, entries
    int64_t first_query, first_score;
    int64_t filled;  // queries of this chunk probing it
  };

  const faiss::IndexIVF& index_;
  const bool fp16_;
  const IvfScanRequest& r_;
  const faiss_idx* probes_;
  const int nprobe_;
  ListViews* views_;
  std::vector<ActiveList> active_;
  std::vector<int64_t> list_queries_;
  std::vector<int64_t> row_of_;      // [(q - q0) * nprobe + p]: offset in buffer_, -1 none
  std::unique_ptr<float[]> buffer_;  // scores, uninitialised
  int64_t buffer_size_ = 0;
};

}  // namespace

void IvfScan(const faiss::IndexIVF& index, bool fp16_codes, const IvfScanRequest& r, float* scores,
             int64_t* ids) {
  const int nprobe = static_cast<int>(std::min<int64_t>(r.nprobe, index.nlist));
  std::vector<faiss_idx> probes(r.nq * nprobe);
  {
    std::vector<float> coarse_distances(r.nq * nprobe);
    index.quantizer->search(r.nq, r.coarse_queries, nprobe, coarse_distances.data(), probes.data());
  }
  ListViews views(index.invlists);
  ChunkScan scan(index, fp16_codes, r, probes.data(), nprobe, &views);
  int64_t q0 = 0;
  while (q0 < r.nq) {
    int64_t q1 = q0, held = 0;
    while (q1 < r.nq) {
      int64_t need = 0;
      for (int p = 0; p < nprobe; ++p) {
        const faiss_idx l = probes[q1 * nprobe + p];
        if (l >= 0) need += static_cast<int64_t>(index.invlists->list_size(l));
      }
      if (q1 > q0 && held + need > kMaxScoresPerChunk) break;
      held += need;
      ++q1;
    }
    scan.Run(q0, q1, scores, ids);
    q0 = q1;
  }
}

}  // namespace fot
