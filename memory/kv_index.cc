#include "memory/kv_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/invlists/InvertedLists.h>
#include <unistd.h>

#include <cmath>

#include "memory/ip_reduction.h"
#include "memory/ivf_quantizer.h"

namespace fot::kv_internal {
namespace {

using faiss_idx = faiss::Index::idx_t;

// k-means of a (re)training sees at most this many keys per list: enough for
// stable centroids (FAISS itself samples 256 per list) at a fraction of the
// cost when a large memory is retrained.
constexpr int64_t kTrainKeysPerList = 32;
// Up to this many lists, an IVF quantizer is one flat k-means; above, two
// levels (ivf_quantizer.h).
constexpr int kMaxFlatQuantizerLists = 512;

}  // namespace

int PqProbes(const MemoryOptions& o, int nlist) {
  if (o.ivf_nprobe > 0) return std::min(o.ivf_nprobe, nlist);
  return std::clamp(static_cast<int>(std::ceil(o.ivf_max_scan * nlist)), 1, nlist);
}

std::unique_ptr<faiss::Index> MakeExactIndex(const Shape& s) {
  if (!s.fp16_keys) return std::make_unique<faiss::IndexFlatIP>(s.d);
  return std::make_unique<faiss::IndexScalarQuantizer>(s.d, faiss::ScalarQuantizer::QT_fp16,
                                                       faiss::METRIC_INNER_PRODUCT);
}

void ReserveIndex(faiss::Index* index, int64_t n) {
  if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index)) index = hnsw->storage;
  if (auto* codes = dynamic_cast<faiss::IndexFlatCodes*>(index)) {
    GrowFor(&codes->codes, n * codes->code_size);
  }
}

void AddToIndex(faiss::Index* index, std::unique_ptr<ListAssigner>* assigner, const float* x,
                int64_t n) {
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(index);
  if (ivf != nullptr && *assigner == nullptr) *assigner = ListAssigner::For(*ivf->quantizer);
  if (ivf == nullptr || *assigner == nullptr) {
    index->add(n, x);
    return;
  }
  std::vector<faiss_idx> lists(n);
  (*assigner)->Assign(x, n, lists.data());
  ivf->add_core(n, x, /*xids=*/nullptr, lists.data());
}

std::unique_ptr<faiss::Index> BuildApproximate(const Shape& s, const MemoryOptions& o, int nlist,
                                               const float* aug, int64_t n) {
  if (o.index_kind == IndexKind::kHnsw) {
    std::unique_ptr<faiss::IndexHNSW> h;
    if (s.fp16_keys) {
      h = std::make_unique<faiss::IndexHNSWSQ>(s.aug, faiss::ScalarQuantizer::QT_fp16, o.hnsw_m,
                                               faiss::METRIC_L2);
    } else {
      h = std::make_unique<faiss::IndexHNSWFlat>(s.aug, o.hnsw_m, faiss::METRIC_L2);
    }
    h->hnsw.efConstruction = o.hnsw_ef_construction;
    h->hnsw.efSearch = o.hnsw_ef_search;  // 1.7.3 ignores SearchParametersHNSW::efSearch
    if (!h->is_trained) h->train(n, aug);
    ReserveIndex(h.get(), n);
    h->add(n, aug);
    return h;
  }
  const int64_t train_n =
      std::min<int64_t>(n, std::max<int64_t>(o.ivf_train_size, kTrainKeysPerList * nlist));
  std::vector<float> sample;
  const float* train = aug;
  if (train_n < n) {
    sample.resize(train_n * s.aug);
    for (int64_t i = 0; i < train_n; ++i) {
      std::copy_n(aug + (i * n / train_n) * s.aug, s.aug, &sample[i * s.aug]);
    }
    train = sample.data();
  }
  std::unique_ptr<faiss::Index> quantizer;
  if (!o.ivf_pq && nlist > kMaxFlatQuantizerLists) {
    quantizer = TrainTwoLevelQuantizer(s.aug, nlist, train, train_n);
  } else {
    quantizer = std::make_unique<faiss::IndexFlatL2>(s.aug);
  }
  std::unique_ptr<faiss::IndexIVF> ivf;
  if (o.ivf_pq) {
    ivf = std::make_unique<faiss::IndexIVFPQ>(quantizer.get(), s.aug, nlist, o.ivf_pq_m, 8);
  } else if (s.fp16_keys) {
    ivf = std::make_unique<faiss::IndexIVFScalarQuantizer>(
        quantizer.get(), s.aug, nlist, faiss::ScalarQuantizer::QT_fp16, faiss::METRIC_L2,
        /*encode_residual=*/false);  // fp16 needs no residual, and stays exact
  } else {
    ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), s.aug, nlist, faiss::METRIC_L2);
  }
  quantizer.release();
  ivf->own_fields = true;
  ivf->nprobe = PqProbes(o, nlist);
  ivf->cp.niter = kIvfKmeansIterations;
  ivf->cp.min_points_per_centroid = 1;     // kTrainKeysPerList per list is deliberate: no warning
  ivf->train(train_n, train);              // a trained two-level quantizer is kept as it is
  ivf->make_direct_map(true);              // reconstruct(id) for ReadKeys and re-scoring
  std::unique_ptr<ListAssigner> assigner;  // used once: a store makes its own
  AddToIndex(ivf.get(), &assigner, aug, n);
  return ivf;
}

void CopyMappedListsToMemory(StoreState* st) {
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(st->index.get());
  if (ivf == nullptr || st->mapped_fd < 0) return;
  const faiss::InvertedLists* src = ivf->invlists;
  auto* copy = new faiss::ArrayInvertedLists(src->nlist, src->code_size);
  for (size_t l = 0; l < src->nlist; ++l) {
    faiss::InvertedLists::ScopedIds ids(src, l);
    faiss::InvertedLists::ScopedCodes codes(src, l);
    copy->add_entries(l, src->list_size(l), ids.get(), codes.get());
  }
  ivf->replace_invlists(copy, /*own=*/true);
  close(st->mapped_fd);
  st->mapped_fd = -1;
}

int64_t IndexBytes(const faiss::Index* index) {
  if (index == nullptr) return 0;
  if (auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(index)) {
    return VectorBytes(codes->codes);
  }
  if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) {
    return IndexBytes(h->storage) + VectorBytes(h->hnsw.neighbors) + VectorBytes(h->hnsw.levels) +
           VectorBytes(h->hnsw.offsets);
  }
  if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index)) {
    int64_t bytes = IndexBytes(ivf->quantizer) + VectorBytes(ivf->direct_map.array);
    const faiss::InvertedLists* il = ivf->invlists;
    if (auto* arr = dynamic_cast<const faiss::ArrayInvertedLists*>(il)) {
      for (size_t l = 0; l < arr->nlist; ++l) {
        bytes += VectorBytes(arr->codes[l]) + VectorBytes(arr->ids[l]);
      }
    } else {
      for (size_t l = 0; l < il->nlist; ++l) {
        bytes += il->list_size(l) * (il->code_size + sizeof(faiss_idx));  // mapped
      }
    }
    if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(index)) {
      bytes += VectorBytes(pq->pq.centroids) + pq->precomputed_table.size() * sizeof(float);
    }
    return bytes;
  }
  return index->ntotal * index->sa_code_size();
}

bool UsesBounds(const MemoryOptions& o) { return o.index_kind == IndexKind::kIvf && !o.ivf_pq; }

void ExtendBounds(const Shape& s, StoreState& st, int64_t first, const float* keys, int64_t n) {
  const auto& ivf = dynamic_cast<const faiss::IndexIVF&>(*st.index);
  std::vector<float> stored(keys, keys + n * s.d);
  for (float& x : stored) x = Stored(s, x);
  std::vector<int64_t> lists(n);
  for (int64_t i = 0; i < n; ++i) lists[i] = faiss::lo_listno(ivf.direct_map.get(first + i));
  st.bounds->Extend(stored.data(), lists.data(), n);
}

bool NeedsMoreLists(const MemoryOptions& o, const StoreState& st, int64_t keys) {
  if (!st.built || o.index_kind != IndexKind::kIvf || o.ivf_pq || o.ivf_nlist > 0) return false;
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(st.index.get());
  return ivf != nullptr && IvfListsFor(keys) >= 2 * static_cast<int64_t>(ivf->nlist);
}

}  // namespace fot::kv_internal
