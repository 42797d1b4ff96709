#include "memory/kv_store.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>

#include "memory/ivf_quantizer.h"
#include "memory/ivf_scan.h"
#include "memory/kv_store_internal.h"

namespace fot {

namespace {

using faiss_idx = faiss::Index::idx_t;
using kv_internal::FaissError;
using kv_internal::MakeShape;
using kv_internal::ReadLock;
using kv_internal::SetBit;
using kv_internal::Shape;
using kv_internal::StoreState;
using kv_internal::TestBit;
using kv_internal::WriteLock;

constexpr double kBoundHeadroomSq = 1.25 * 1.25;  // B = 1.25 x largest norm at build
// Keys decoded per exact-search block. Each block restarts FAISS's top-k heaps
// and is merged after; 64k-key blocks (16 MB at d=64) cost 1.03-1.18x a bare
// IndexFlatIP search, 16k-key blocks 1.44-1.72x (bench/memory_bench.cc).
constexpr int64_t kExactBlock = 65536;
constexpr int64_t kMaxEntries = (int64_t{1} << 31) - 1;  // HNSW ids are int32
constexpr int kPqRerankFactor = 8;                       // IVF-PQ fetches 8k candidates to re-rank
// k-means of a (re)training sees at most this many keys per list: enough for
// stable centroids (FAISS itself samples 256 per list) at a fraction of the
// cost when a large memory is retrained.
constexpr int64_t kTrainKeysPerList = 32;
// Up to this many lists, an IVF quantizer is one flat k-means; above, two
// levels (ivf_quantizer.h).
constexpr int kMaxFlatQuantizerLists = 512;

// Lists an IVF-PQ search probes (FAISS's own search, by centroid distance).
int PqProbes(const MemoryOptions& o, int nlist) {
  if (o.ivf_nprobe > 0) return std::min(o.ivf_nprobe, nlist);
  return std::clamp(static_cast<int>(std::ceil(o.ivf_max_scan * nlist)), 1, nlist);
}

// Exact inner-product index over raw keys: the flat kind, and the staging index
// of approximate kinds until their build.
std::unique_ptr<faiss::Index> MakeExactIndex(const Shape& s) {
  if (!s.fp16_keys) return std::make_unique<faiss::IndexFlatIP>(s.d);
  return std::make_unique<faiss::IndexScalarQuantizer>(s.d, faiss::ScalarQuantizer::QT_fp16,
                                                       faiss::METRIC_INNER_PRODUCT);
}

// Grows capacity by 1/8 instead of doubling, so that bytes() stays close to the
// payload (flat fp16 must stay within 30% of 4 x head_dim bytes per entry).
template <typename T>
void GrowFor(std::vector<T>* v, size_t extra) {
  const size_t need = v->size() + extra;
  if (need > v->capacity()) v->reserve(std::max(need, v->capacity() + v->capacity() / 8));
}

void ReserveIndex(faiss::Index* index, int64_t n) {
  if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index)) index = hnsw->storage;
  if (auto* codes = dynamic_cast<faiss::IndexFlatCodes*>(index)) {
    GrowFor(&codes->codes, n * codes->code_size);
  }
}

// The key as stored: fp16 codes round it.
float Stored(const Shape& s, float x) {
  return s.fp16_keys ? faiss::decode_fp16(faiss::encode_fp16(x)) : x;
}

double MaxNormSq(const Shape& s, const float* x, int64_t n) {
  double best = 0;
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < s.d; ++j)
      norm += double(Stored(s, x[i * s.d + j])) * Stored(s, x[i * s.d + j]);
    best = std::max(best, norm);
  }
  return best;
}

// Largest value e <= sqrt(r) that the key codes store exactly.
float RoundDownForCodes(const Shape& s, double r) {
  const double e = std::sqrt(std::max(r, 0.0));
  if (s.fp16_keys) {
    uint16_t h = faiss::encode_fp16(static_cast<float>(e));
    while (h > 0 && double(faiss::decode_fp16(h)) * faiss::decode_fp16(h) > r) --h;
    return faiss::decode_fp16(h);
  }
  float f = static_cast<float>(e);
  while (f > 0 && double(f) * f > r) f = std::nextafter(f, 0.0f);
  return f;
}

// Reduced keys (x, e1, e2, 0...) [n, aug]; overflow[i] = 1 where |x| > B.
std::vector<float> Augment(const Shape& s, const float* x, int64_t n, double bound_sq,
                           std::vector<uint8_t>* overflow) {
  std::vector<float> out(n * s.aug, 0.0f);
  overflow->assign(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < s.d; ++j) {
      out[i * s.aug + j] = x[i * s.d + j];
      norm += double(Stored(s, x[i * s.d + j])) * Stored(s, x[i * s.d + j]);
    }
    if (norm > bound_sq) {
      (*overflow)[i] = 1;  // e1 = e2 = 0: misranked, so searched exactly instead
      continue;
    }
    const double r = bound_sq - norm;
    const float e1 = RoundDownForCodes(s, r);
    out[i * s.aug + s.d] = e1;
    out[i * s.aug + s.d + 1] = static_cast<float>(std::sqrt(std::max(0.0, r - double(e1) * e1)));
  }
  return out;
}

// Builds the approximate index over n reduced keys; IVF gets `nlist` lists,
// trained on at most kTrainKeysPerList keys per list spread over all n.
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
  ivf->cp.min_points_per_centroid = 1;  // kTrainKeysPerList per list is deliberate: no warning
  ivf->train(train_n, train);           // a trained two-level quantizer is kept as it is
  ivf->make_direct_map(true);           // reconstruct(id) for ReadKeys and re-scoring
  ivf->add(n, aug);
  return ivf;
}

// Copies memory-mapped (read-only) IVF lists into memory so that they accept
// adds. Caller holds mu_ exclusively.
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

// Decodes stored keys by id straight from the codes. (Index::reconstruct
// would do too, but FAISS 1.7.3 decodes scalar-quantizer codes in an OpenMP
// parallel region even for one vector: per-result calls cost a thread wake-up
// each, milliseconds on a busy machine.) Reads the index: caller holds a lock.
class KeyReader {
 public:
  KeyReader(const Shape& s, const StoreState& st) : s_(s) {
    const faiss::Index* index = st.index.get();
    if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) index = h->storage;
    if (auto* flat = dynamic_cast<const faiss::IndexFlatCodes*>(index)) {
      codes_ = flat->codes.data();
      code_size_ = flat->code_size;
    } else {
      ivf_ = dynamic_cast<const faiss::IndexIVF*>(index);
      pq_ = dynamic_cast<const faiss::IndexIVFPQ*>(index) != nullptr;
      code_size_ = ivf_->code_size;
      buf_.resize(s.aug);
    }
  }
  void Read(int64_t id, float* out) {
    const uint8_t* code = codes_ + id * code_size_;
    if (ivf_ != nullptr) {
      const uint64_t lo = ivf_->direct_map.get(id);
      const size_t list = faiss::lo_listno(lo), offset = faiss::lo_offset(lo);
      if (pq_) {
        ivf_->reconstruct_from_offset(list, offset, buf_.data());
        std::memcpy(out, buf_.data(), s_.d * sizeof(float));
        return;
      }
      faiss::InvertedLists::ScopedCodes codes(ivf_->invlists, list);
      Decode(codes.get() + offset * code_size_, out);
      return;
    }
    Decode(code, out);
  }
  // Keys first.. as stored floats, when they are (flat f32 codes), else null.
  const float* Contiguous(int64_t first) const {
    if (codes_ == nullptr || s_.fp16_keys || s_.aug != s_.d) return nullptr;
    return reinterpret_cast<const float*>(codes_) + first * s_.d;
  }

 private:
  void Decode(const uint8_t* code, float* out) const {
    if (s_.fp16_keys) {
      const auto* h = reinterpret_cast<const uint16_t*>(code);
      HalfToFloatRow(h, s_.d, out);
    } else {
      std::memcpy(out, code, s_.d * sizeof(float));
    }
  }

  const Shape s_;
  const uint8_t* codes_ = nullptr;
  size_t code_size_ = 0;
  const faiss::IndexIVF* ivf_ = nullptr;
  bool pq_ = false;
  std::vector<float> buf_;
};

// Merges sorted (best first) row b [k] into row a [k].
void MergeRow(int k, float* a_score, int64_t* a_id, const float* b_score, const int64_t* b_id) {
  std::vector<float> score(k);
  std::vector<int64_t> id(k);
  int i = 0, j = 0;
  for (int t = 0; t < k; ++t) {
    const bool take_a = b_id[j] < 0 || (a_id[i] >= 0 && a_score[i] >= b_score[j]);
    score[t] = take_a ? a_score[i] : b_score[j];
    id[t] = take_a ? a_id[i++] : b_id[j++];
  }
  std::copy(score.begin(), score.end(), a_score);
  std::copy(id.begin(), id.end(), a_id);
}

// Exact top-k over the keys of `members` (all ids when null): keys decoded to
// float in blocks, each block one BLAS-backed FAISS search for all queries.
// Used for flat kinds too: FAISS 1.7.3's generic build scans fp16 codes ~30x
// slower than this (measured: 7.3 s vs 0.2 s for 2048 queries x 50k keys,
// d=64), and its IDSelector path for IndexFlat skips BLAS (12x slower).
void ExactSearch(const Shape& s, const StoreState& st, const float* q, int64_t nq, int k,
                 const std::vector<int64_t>* members, float* scores, int64_t* ids) {
  std::fill(scores, scores + nq * k, -std::numeric_limits<float>::infinity());
  std::fill(ids, ids + nq * k, -1);
  KeyReader reader(s, st);
  const int64_t total = members != nullptr ? static_cast<int64_t>(members->size()) : st.size;
  std::vector<float> keys;
  std::vector<float> bs(nq * k);
  std::vector<int64_t> bi(nq * k);
  for (int64_t b0 = 0; b0 < total; b0 += kExactBlock) {
    const int64_t nb = std::min<int64_t>(kExactBlock, total - b0);
    const float* block = members == nullptr ? reader.Contiguous(b0) : nullptr;
    if (block == nullptr) {
      keys.resize(nb * s.d);
      for (int64_t i = 0; i < nb; ++i) {
        reader.Read(members != nullptr ? (*members)[b0 + i] : b0 + i, &keys[i * s.d]);
      }
      block = keys.data();
    }
    faiss::knn_inner_product(q, block, s.d, nq, nb, k, bs.data(), bi.data());
    for (int64_t i = 0; i < nq * k; ++i) {
      if (bi[i] < 0) {
        bs[i] = -std::numeric_limits<float>::infinity();
      } else {
        bi[i] = members != nullptr ? (*members)[b0 + bi[i]] : b0 + bi[i];
      }
    }
    for (int64_t r = 0; r < nq; ++r) {
      MergeRow(k, scores + r * k, ids + r * k, &bs[r * k], &bi[r * k]);
    }
  }
}

int64_t VectorBytes(const auto& v) { return v.capacity() * sizeof(v[0]); }

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

// Whether a built IVF store of these options orders its probes by list estimates (ivf_bounds.h):
// every IVF but PQ, whose lossy codes FAISS searches itself.
bool UsesBounds(const MemoryOptions& o) { return o.index_kind == IndexKind::kIvf && !o.ivf_pq; }

// Widens the bounds of the lists that keys [n, d] (ids first..) went to, as
// the codes store them. Caller holds mu_ exclusively.
void ExtendBounds(const Shape& s, StoreState& st, int64_t first, const float* keys, int64_t n) {
  const auto& ivf = dynamic_cast<const faiss::IndexIVF&>(*st.index);
  std::vector<float> stored(keys, keys + n * s.d);
  for (float& x : stored) x = Stored(s, x);
  std::vector<int64_t> lists(n);
  for (int64_t i = 0; i < n; ++i) lists[i] = faiss::lo_listno(ivf.direct_map.get(first + i));
  st.bounds->Extend(stored.data(), lists.data(), n);
}

// Whether an IVF index with automatic lists is due for a retraining at `keys`
// keys: when twice its lists would fit (memory_options.h).
bool NeedsMoreLists(const MemoryOptions& o, const StoreState& st, int64_t keys) {
  if (!st.built || o.index_kind != IndexKind::kIvf || o.ivf_pq || o.ivf_nlist > 0) return false;
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(st.index.get());
  return ivf != nullptr && IvfListsFor(keys) >= 2 * static_cast<int64_t>(ivf->nlist);
}

// The tombstone/document/overflow predicate, handed to FAISS as an IDSelector.
// FAISS calls it from its OpenMP threads; it only reads, under the caller's
// read lock.
struct Selection final : faiss::IDSelector {
  Selection(const StoreState& st, const SearchFilter* filter) : st(st) {
    if (filter != nullptr) documents = filter->documents;
    std::sort(documents.begin(), documents.end());
    documents.erase(std::unique(documents.begin(), documents.end()), documents.end());
    restricts = st.deleted > 0 || !documents.empty();
    selected_live = st.size - st.deleted;
    if (!documents.empty()) {
      selected_live = 0;
      for (int64_t doc : documents) {
        auto it = st.live_per_document.find(doc);
        if (it != st.live_per_document.end()) selected_live += it->second;
      }
    }
  }
  bool is_member(faiss_idx id) const override {
    if (id < 0 || id >= st.size || TestBit(st.deleted_bits, id)) return false;
    if (exclude_overflow && TestBit(st.overflow_bits, id)) return false;
    return documents.empty() ||
           std::binary_search(documents.begin(), documents.end(), st.provenance[id].document);
  }
  std::vector<int64_t> Members(const std::vector<int64_t>* among = nullptr) const {
    std::vector<int64_t> out;
    if (among != nullptr) {
      for (int64_t id : *among) {
        if (is_member(id)) out.push_back(id);
      }
    } else {
      for (int64_t id = 0; id < st.size; ++id) {
        if (is_member(id)) out.push_back(id);
      }
    }
    return out;
  }

  const StoreState& st;
  std::vector<int64_t> documents;  // sorted, unique; empty: all
  bool exclude_overflow = false;
  bool restricts = false;  // false: every id below st.size is a member
  int64_t selected_live = 0;
};

// HNSW and IVF-PQ: FAISS's own search over the reduced keys (queries `qa`),
// its results re-scored exactly from the stored keys (`q`) and sorted again.
void SearchAndRescore(const Shape& s, const StoreState& st, const MemoryOptions& o, const float* q,
                      const float* qa, int64_t nq, int kk, int64_t selected_live,
                      const faiss::IDSelector* selector, float* d, int64_t* r) {
  faiss::SearchParametersIVF ivf_params;
  faiss::SearchParametersHNSW hnsw_params;
  faiss::SearchParameters* params = &hnsw_params;
  hnsw_params.efSearch = o.hnsw_ef_search;
  if (o.index_kind == IndexKind::kIvf) {
    ivf_params.nprobe =
        PqProbes(o, static_cast<int>(dynamic_cast<const faiss::IndexIVF&>(*st.index).nlist));
    params = &ivf_params;
  }
  params->sel = const_cast<faiss::IDSelector*>(selector);  // 1.7.3: non-const, only read
  // PQ codes blur the reduction's extra coordinates, which rank keys
  // coarsely: fetch more candidates and re-rank them exactly.
  const int fetch =
      o.ivf_pq && o.index_kind == IndexKind::kIvf
          ? static_cast<int>(std::min<int64_t>(int64_t{kPqRerankFactor} * kk, selected_live))
          : kk;
  std::vector<float> fd(nq * fetch);
  std::vector<int64_t> fr(nq * fetch);
  st.index->search(nq, qa, fetch, fd.data(), fr.data(), params);
  KeyReader reader(s, st);
  std::vector<float> key(s.d);
  std::vector<std::pair<float, int64_t>> row(fetch);
  for (int64_t i = 0; i < nq; ++i) {
    for (int j = 0; j < fetch; ++j) {
      const int64_t id = fr[i * fetch + j];
      float score = -std::numeric_limits<float>::infinity();
      if (id >= 0) {
        reader.Read(id, key.data());
        score = faiss::fvec_inner_product(&q[i * s.d], key.data(), s.d);
      }
      row[j] = {score, id};
    }
    std::partial_sort(row.begin(), row.begin() + kk, row.end(), [](const auto& a, const auto& b) {
      return (a.second >= 0) != (b.second >= 0) ? a.second >= 0 : a.first > b.first;
    });
    for (int j = 0; j < kk; ++j) std::tie(d[i * kk + j], r[i * kk + j]) = row[j];
  }
}

}  // namespace

KvStore::KvStore(int head_dim, const MemoryOptions& options)
    : head_dim_(head_dim), options_(options), state_(std::make_unique<StoreState>()) {}

KvStore::~KvStore() = default;

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Create(int head_dim,
                                                         const MemoryOptions& options) {
  if (absl::Status s = ValidateMemoryOptions(options, head_dim); !s.ok()) return s;
  std::unique_ptr<KvStore> store(new KvStore(head_dim, ResolveMemoryOptions(options, head_dim)));
  try {
    store->state_->index = MakeExactIndex(MakeShape(head_dim, store->options_));
  } catch (const std::exception& e) {
    return FaissError("index creation", e);
  }
  store->state_->built = options.index_kind == IndexKind::kFlat;
  return store;
}

int64_t KvStore::size() const {
  ReadLock l(&mu_);
  return state_->size;
}

int64_t KvStore::live_size() const {
  ReadLock l(&mu_);
  return state_->size - state_->deleted;
}

bool KvStore::index_built() const {
  ReadLock l(&mu_);
  return state_->built;
}

int64_t KvStore::index_lists() const {
  ReadLock l(&mu_);
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(state_->index.get());
  return state_->built && ivf != nullptr ? static_cast<int64_t>(ivf->nlist) : 0;
}

int64_t KvStore::overflow_size() const {
  ReadLock l(&mu_);
  return static_cast<int64_t>(state_->overflow_ids.size());
}

absl::Status KvStore::Append(const float* keys, int64_t key_stride, const float* values,
                             int64_t value_stride, const Provenance* provenance, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError("Append: n=" + std::to_string(n) + " < 0");
  if (n == 0) return absl::OkStatus();
  if (keys == nullptr || values == nullptr || provenance == nullptr) {
    return absl::InvalidArgumentError("Append: keys, values and provenance must be non-null");
  }
  if (key_stride < head_dim_ || value_stride < head_dim_) {
    return absl::InvalidArgumentError("Append: key_stride=" + std::to_string(key_stride) +
                                      " and value_stride=" + std::to_string(value_stride) +
                                      " must be >= head_dim=" + std::to_string(head_dim_));
  }
  const Shape s = MakeShape(head_dim_, options_);
  const float key_max = MaxFinite(s.fp16_keys ? StorageType::kFloat16 : StorageType::kFloat32);
  const float value_max = MaxFinite(options_.dtype);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < head_dim_; ++j) {
      const float k = keys[i * key_stride + j], v = values[i * value_stride + j];
      if (std::fabs(k) <= key_max && std::fabs(v) <= value_max) continue;
      const bool key = !(std::fabs(k) <= key_max);
      return absl::InvalidArgumentError(
          std::string("Append: ") + (key ? "key" : "value") + " row " + std::to_string(i) +
          " dim " + std::to_string(j) + " is " + std::to_string(key ? k : v) +
          ": not finite or beyond the range of its storage (" +
          (key ? (s.fp16_keys ? "float16 keys" : "float32 keys")
               : std::string(StorageTypeName(options_.dtype)) + " values") +
          "); use dtype f32 for such data");
    }
  }
  std::vector<float> k(n * head_dim_);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(&k[i * head_dim_], keys + i * key_stride, head_dim_ * sizeof(float));
  }
  std::vector<uint16_t> encoded;
  if (options_.dtype != StorageType::kFloat32) {
    encoded.resize(n * head_dim_);
    for (int64_t i = 0; i < n; ++i) {
      EncodeHalfRow(options_.dtype, values + i * value_stride, head_dim_, &encoded[i * head_dim_]);
    }
  }

  absl::MutexLock writer(&write_mu_);
  StoreState& st = *state_;  // only this thread changes it now, so reads need no mu_
  if (st.broken) {
    return absl::FailedPreconditionError(
        "Append: an earlier FAISS failure left this store inconsistent; Load "
        "its last save");
  }
  if (st.size + n > kMaxEntries) {
    return absl::ResourceExhaustedError("Append: " + std::to_string(st.size) + " + " +
                                        std::to_string(n) +
                                        " entries exceed the limit of 2^31 - 1 per store");
  }
  const int64_t old_size = st.size;
  try {
    std::unique_ptr<faiss::Index> built;  // the approximate index, built now
    std::unique_ptr<IvfBounds> built_bounds;
    double bound_sq = st.bound_sq;
    std::vector<float> aug;
    std::vector<uint8_t> overflow;
    if (options_.index_kind != IndexKind::kFlat) {
      const int64_t threshold =
          options_.index_kind == IndexKind::kHnsw ? kHnswBuildSize : options_.ivf_train_size;
      if ((!st.built && old_size + n >= threshold) || NeedsMoreLists(options_, st, old_size + n)) {
        // Private (re)build from the stored keys plus these; readers go on
        // meanwhile. The bound covers every key now, so nothing overflows.
        std::vector<float> all(old_size * head_dim_);
        KeyReader reader(s, st);
        for (int64_t i = 0; i < old_size; ++i) reader.Read(i, &all[i * head_dim_]);
        all.insert(all.end(), k.begin(), k.end());
        bound_sq = std::max(kBoundHeadroomSq * MaxNormSq(s, all.data(), old_size + n), 1e-30);
        aug = Augment(s, all.data(), old_size + n, bound_sq, &overflow);
        const int nlist = options_.ivf_nlist > 0 ? options_.ivf_nlist : IvfListsFor(old_size + n);
        built = BuildApproximate(s, options_, nlist, aug.data(), old_size + n);
        if (UsesBounds(options_)) {
          built_bounds = std::make_unique<IvfBounds>(IvfBounds::Build(
              dynamic_cast<const faiss::IndexIVF&>(*built), s.fp16_keys, head_dim_));
        }
        overflow.assign(n, 0);
      } else if (st.built) {
        aug = Augment(s, k.data(), n, st.bound_sq, &overflow);
      }
    }
    WriteLock l(&mu_);
    GrowFor(&st.provenance, n);
    GrowFor(&st.values_f32, options_.dtype == StorageType::kFloat32 ? n * head_dim_ : 0);
    GrowFor(&st.values_16, encoded.size());
    if (built != nullptr) {
      st.index.swap(built);  // the old index is freed after unlocking
      st.bounds.swap(built_bounds);
      st.built = true;
      st.bound_sq = bound_sq;
      std::fill(st.overflow_bits.begin(), st.overflow_bits.end(), 0);
      st.overflow_ids.clear();
      if (st.mapped_fd >= 0) close(st.mapped_fd);
      st.mapped_fd = -1;
    } else {
      CopyMappedListsToMemory(&st);
      ReserveIndex(st.index.get(), n);
      st.index->add(n, aug.empty() ? k.data() : aug.data());
      if (st.bounds != nullptr) ExtendBounds(s, st, old_size, k.data(), n);
    }
    // The index holds the new keys; the rest cannot fail but for bad_alloc.
    if (options_.dtype == StorageType::kFloat32) {
      for (int64_t i = 0; i < n; ++i) {
        st.values_f32.insert(st.values_f32.end(), values + i * value_stride,
                             values + i * value_stride + head_dim_);
      }
    }
    st.values_16.insert(st.values_16.end(), encoded.begin(), encoded.end());
    st.provenance.insert(st.provenance.end(), provenance, provenance + n);
    st.deleted_bits.resize((old_size + n + 63) / 64, 0);
    st.overflow_bits.resize((old_size + n + 63) / 64, 0);
    for (int64_t i = 0; i < n; ++i) {
      ++st.live_per_document[provenance[i].document];
      if (!overflow.empty() && overflow[i]) {
        SetBit(&st.overflow_bits, old_size + i);
        st.overflow_ids.push_back(old_size + i);
      }
    }
    st.size = old_size + n;
    return absl::OkStatus();
  } catch (const std::exception& e) {
    WriteLock l(&mu_);
    if (st.index->ntotal == old_size) {  // nothing half-done: roll back what we added
      st.provenance.resize(old_size);
      st.values_f32.resize(std::min<size_t>(st.values_f32.size(), old_size * head_dim_));
      st.values_16.resize(std::min<size_t>(st.values_16.size(), old_size * head_dim_));
      return FaissError("Append", e);
    }
    st.broken = true;
    return absl::InternalError(std::string("Append failed half-way (") + e.what() +
                               "); the store is unusable, Load its last save");
  }
}

absl::Status KvStore::Search(const float* queries, int64_t nq, int64_t query_stride, int k,
                             const SearchFilter* filter, int64_t* ids, float* scores) const {
  if (nq < 0 || k < 1) {
    return absl::InvalidArgumentError("Search: need nq >= 0 and k >= 1, got nq=" +
                                      std::to_string(nq) + " k=" + std::to_string(k));
  }
  if (nq == 0) return absl::OkStatus();
  if (queries == nullptr || ids == nullptr || scores == nullptr || query_stride < head_dim_) {
    return absl::InvalidArgumentError(
        "Search: queries, ids and scores must be "
        "non-null and query_stride >= head_dim");
  }
  std::fill(ids, ids + nq * k, -1);
  std::fill(scores, scores + nq * k, -std::numeric_limits<float>::infinity());
  const Shape s = MakeShape(head_dim_, options_);
  std::vector<float> q(nq * head_dim_);
  for (int64_t i = 0; i < nq; ++i) {
    std::memcpy(&q[i * head_dim_], queries + i * query_stride, head_dim_ * sizeof(float));
  }
  ReadLock l(&mu_);
  const StoreState& st = *state_;
  Selection sel(st, filter);
  const int kk = static_cast<int>(std::min<int64_t>(k, sel.selected_live));
  if (kk == 0) return absl::OkStatus();
  std::vector<float> d(nq * kk);
  std::vector<int64_t> r(nq * kk);
  int64_t scanned = 0, bounded = 0;  // for search_counters()
  // Exact search over a built IVF with float codes probes every list: the
  // list-major products read the codes in place, without decoding each key.
  const bool exact = filter != nullptr && filter->exact;
  const bool approximate =
      st.built && options_.index_kind != IndexKind::kFlat && (!exact || UsesBounds(options_));
  const bool small = sel.restricts && sel.selected_live * 8 <= st.size;
  try {
    // The exact index itself (flat, or an approximate kind before its build)
    // searches with BLAS; a built approximate index holds reduced keys.
    const bool exact_index = !st.built || options_.index_kind == IndexKind::kFlat;
    if (!approximate && exact_index && !sel.restricts && !s.fp16_keys) {
      st.index->search(nq, q.data(), kk, d.data(),
                       r.data());  // IndexFlatIP: BLAS
      scanned = nq * st.size;
    } else if (!approximate || small || sel.selected_live <= 2 * int64_t{kk}) {
      std::vector<int64_t> members;
      if (sel.restricts) members = sel.Members();
      ExactSearch(s, st, q.data(), nq, kk, sel.restricts ? &members : nullptr, d.data(), r.data());
      scanned = nq * (sel.restricts ? static_cast<int64_t>(members.size()) : st.size);
    } else {
      Selection ann(st, filter);
      ann.exclude_overflow = true;
      ann.restricts = ann.restricts || !st.overflow_ids.empty();
      if (options_.index_kind == IndexKind::kIvf && !options_.ivf_pq) {
        const auto& ivf = dynamic_cast<const faiss::IndexIVF&>(*st.index);
        IvfScanRequest request;
        request.queries = q.data();
        request.nq = nq;
        request.dim = head_dim_;
        request.bounds = st.bounds.get();
        request.max_lists = options_.ivf_nprobe > 0 && !exact ? options_.ivf_nprobe : ivf.nlist;
        MemoryOptions budget = options_;
        if (filter != nullptr && filter->max_scan > 0 && filter->max_scan <= 1) {
          budget.ivf_max_scan = filter->max_scan;
        }
        request.max_keys = exact ? st.size : IvfScanBudget(budget, st.size);
        request.k = kk;
        request.selector = ann.restricts ? &ann : nullptr;
        request.keys_scanned = &scanned;
        IvfScan(ivf, s.fp16_keys, request, d.data(), r.data());
        bounded = nq * static_cast<int64_t>(ivf.nlist);
      } else {
        // FAISS searches the reduced space: queries become (q, 0, 0).
        std::vector<float> qa(nq * s.aug, 0.0f);
        for (int64_t i = 0; i < nq; ++i) {
          std::memcpy(&qa[i * s.aug], &q[i * head_dim_], head_dim_ * sizeof(float));
        }
        SearchAndRescore(s, st, options_, q.data(), qa.data(), nq, kk, sel.selected_live,
                         ann.restricts ? &ann : nullptr, d.data(), r.data());
      }
      const std::vector<int64_t> extra = sel.Members(&st.overflow_ids);
      if (!extra.empty()) {
        std::vector<float> od(nq * kk);
        std::vector<int64_t> orow(nq * kk);
        ExactSearch(s, st, q.data(), nq, kk, &extra, od.data(), orow.data());
        scanned += nq * static_cast<int64_t>(extra.size());
        for (int64_t i = 0; i < nq; ++i) {
          MergeRow(kk, &d[i * kk], &r[i * kk], &od[i * kk], &orow[i * kk]);
        }
      }
    }
  } catch (const std::exception& e) {
    return FaissError("Search", e);
  }
  for (int64_t i = 0; i < nq; ++i) {
    for (int j = 0; j < kk; ++j) {
      ids[i * k + j] = r[i * kk + j];
      if (r[i * kk + j] >= 0) scores[i * k + j] = d[i * kk + j];
    }
  }
  searched_queries_.fetch_add(nq, std::memory_order_relaxed);
  scored_keys_.fetch_add(scanned, std::memory_order_relaxed);
  bounded_lists_.fetch_add(bounded, std::memory_order_relaxed);
  return absl::OkStatus();
}

SearchCounters KvStore::search_counters() const {
  return {searched_queries_.load(std::memory_order_relaxed),
          scored_keys_.load(std::memory_order_relaxed),
          bounded_lists_.load(std::memory_order_relaxed)};
}

namespace {
absl::Status CheckRange(const char* what, int64_t first, int64_t count, int64_t size) {
  if (first < 0 || count < 0 || first > size - count) {
    return absl::OutOfRangeError(std::string(what) + ": ids [" + std::to_string(first) + ", " +
                                 std::to_string(first + count) + ") are outside [0, " +
                                 std::to_string(size) + ")");
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status KvStore::ReadKeys(int64_t first, int64_t count, float* out) const {
  ReadLock l(&mu_);
  const StoreState& st = *state_;
  if (absl::Status s = CheckRange("ReadKeys", first, count, st.size); !s.ok()) return s;
  if (count == 0) return absl::OkStatus();
  try {
    const Shape s = MakeShape(head_dim_, options_);
    KeyReader reader(s, st);
    for (int64_t i = 0; i < count; ++i) reader.Read(first + i, out + i * head_dim_);
  } catch (const std::exception& e) {
    return FaissError("ReadKeys", e);
  }
  return absl::OkStatus();
}

absl::Status KvStore::GatherValues(const int64_t* ids, int64_t n, float* out) const {
  if (n < 0 || (n > 0 && (ids == nullptr || out == nullptr))) {
    return absl::InvalidArgumentError("GatherValues: need n >= 0 and non-null ids and out");
  }
  ReadLock l(&mu_);
  const StoreState& st = *state_;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    float* row = out + i * head_dim_;
    if (id == -1) {
      std::fill(row, row + head_dim_, 0.0f);
    } else if (id < 0 || id >= st.size) {
      return absl::OutOfRangeError("GatherValues: id " + std::to_string(id) + " at position " +
                                   std::to_string(i) + " is outside [0, " +
                                   std::to_string(st.size) + ") and not -1");
    } else if (options_.dtype == StorageType::kFloat32) {
      std::memcpy(row, &st.values_f32[id * head_dim_], head_dim_ * sizeof(float));
    } else {
      DecodeHalfRow(options_.dtype, &st.values_16[id * head_dim_], head_dim_, row);
    }
  }
  return absl::OkStatus();
}

absl::Status KvStore::ReadValues(int64_t first, int64_t count, float* out) const {
  {
    ReadLock l(&mu_);
    if (absl::Status s = CheckRange("ReadValues", first, count, state_->size); !s.ok()) return s;
  }
  std::vector<int64_t> ids(count);  // entries never change once visible
  for (int64_t i = 0; i < count; ++i) ids[i] = first + i;
  return GatherValues(ids.data(), count, out);
}

absl::Status KvStore::ReadProvenance(int64_t first, int64_t count, Provenance* out) const {
  ReadLock l(&mu_);
  if (absl::Status s = CheckRange("ReadProvenance", first, count, state_->size); !s.ok()) {
    return s;
  }
  std::copy_n(state_->provenance.begin() + first, count, out);
  return absl::OkStatus();
}

Provenance KvStore::provenance(int64_t id) const {
  ReadLock l(&mu_);
  if (id < 0 || id >= state_->size) return Provenance{-1, -1, -1};
  return state_->provenance[id];
}

bool KvStore::is_deleted(int64_t id) const {
  ReadLock l(&mu_);
  return id < 0 || id >= state_->size || TestBit(state_->deleted_bits, id);
}

absl::Status KvStore::DeleteDocument(int64_t document) {
  absl::MutexLock writer(&write_mu_);
  StoreState& st = *state_;
  auto it = st.live_per_document.find(document);
  if (it == st.live_per_document.end()) {
    return absl::NotFoundError("DeleteDocument: no live entry of document " +
                               std::to_string(document) + " in this store");
  }
  WriteLock l(&mu_);
  for (int64_t id = 0; id < st.size; ++id) {
    if (st.provenance[id].document == document && !TestBit(st.deleted_bits, id)) {
      SetBit(&st.deleted_bits, id);
      ++st.deleted;
    }
  }
  st.live_per_document.erase(it);
  return absl::OkStatus();
}

std::vector<int64_t> KvStore::Documents() const {
  ReadLock l(&mu_);
  std::vector<int64_t> docs;
  for (const auto& [doc, live] : state_->live_per_document) docs.push_back(doc);
  return docs;
}

int64_t KvStore::bytes() const {
  ReadLock l(&mu_);
  const StoreState& st = *state_;
  return IndexBytes(st.index.get()) + (st.bounds != nullptr ? st.bounds->bytes() : 0) +
         VectorBytes(st.values_f32) + VectorBytes(st.values_16) + VectorBytes(st.provenance) +
         VectorBytes(st.deleted_bits) + VectorBytes(st.overflow_bits) +
         VectorBytes(st.overflow_ids) +
         static_cast<int64_t>(st.live_per_document.size()) * 48;  // map node, approx.
}

}  // namespace fot
