#include "memory/kv_store.h"

#include <faiss/IndexIVF.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>

#include "base/status_macros.h"
#include "memory/ip_reduction.h"
#include "memory/ivf_scan.h"
#include "memory/kv_index.h"
#include "memory/kv_search.h"
#include "memory/kv_store_internal.h"

namespace fot {

namespace {

using kv_internal::AddToIndex;
using kv_internal::Augment;
using kv_internal::BuildApproximate;
using kv_internal::CopyMappedListsToMemory;
using kv_internal::ExactSearch;
using kv_internal::ExtendBounds;
using kv_internal::FaissError;
using kv_internal::GrowFor;
using kv_internal::IndexBytes;
using kv_internal::KeyReader;
using kv_internal::MakeExactIndex;
using kv_internal::MakeShape;
using kv_internal::MaxNormSq;
using kv_internal::MergeRow;
using kv_internal::NeedsMoreLists;
using kv_internal::ReadLock;
using kv_internal::ReserveIndex;
using kv_internal::SearchAndRescore;
using kv_internal::Selection;
using kv_internal::SetBit;
using kv_internal::Shape;
using kv_internal::StoreState;
using kv_internal::TestBit;
using kv_internal::UsesBounds;
using kv_internal::VectorBytes;
using kv_internal::WriteLock;

constexpr double kBoundHeadroomSq = 1.25 * 1.25;         // B = 1.25 x largest norm at build
constexpr int64_t kMaxEntries = (int64_t{1} << 31) - 1;  // HNSW ids are int32
}  // namespace

KvStore::KvStore(int head_dim, const MemoryOptions& options)
    : head_dim_(head_dim), options_(options), state_(std::make_unique<StoreState>()) {}

KvStore::~KvStore() = default;

absl::StatusOr<std::unique_ptr<KvStore>> KvStore::Create(int head_dim,
                                                         const MemoryOptions& options) {
  FOT_RETURN_IF_ERROR(ValidateMemoryOptions(options, head_dim));
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

namespace {

// InvalidArgument unless every key and value is finite and within the range
// of its storage.
absl::Status CheckRows(const Shape& s, const MemoryOptions& o, const float* keys,
                       int64_t key_stride, const float* values, int64_t value_stride, int64_t n) {
  const float key_max = MaxFinite(s.fp16_keys ? StorageType::kFloat16 : StorageType::kFloat32);
  const float value_max = MaxFinite(o.dtype);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < s.d; ++j) {
      const float k = keys[i * key_stride + j], v = values[i * value_stride + j];
      if (std::fabs(k) <= key_max && std::fabs(v) <= value_max) continue;
      const bool key = !(std::fabs(k) <= key_max);
      return absl::InvalidArgumentError(std::string("Append: ") + (key ? "key" : "value") +
                                        " row " + std::to_string(i) + " dim " + std::to_string(j) +
                                        " is " + std::to_string(key ? k : v) +
                                        ": not finite or beyond the range of its storage (" +
                                        (key ? (s.fp16_keys ? "float16 keys" : "float32 keys")
                                             : std::string(StorageTypeName(o.dtype)) + " values") +
                                        "); use dtype f32 for such data");
    }
  }
  return absl::OkStatus();
}

// What an append does to the index, prepared without holding mu_ (readers go
// on meanwhile): a new index when one is (re)built now, else the reduced keys
// to add (empty: add the keys themselves).
struct IndexUpdate {
  std::unique_ptr<faiss::Index> built;
  std::unique_ptr<IvfBounds> built_bounds;
  double bound_sq = 0;
  std::vector<float> aug;
  std::vector<uint8_t> overflow;  // [n] or empty: none of the new keys overflows
};

// `k` holds the n new keys [n, d]. Only the writer (write_mu_) calls this.
IndexUpdate PrepareIndexUpdate(const Shape& s, const MemoryOptions& o, const StoreState& st,
                               const std::vector<float>& k, int64_t n) {
  IndexUpdate u;
  u.bound_sq = st.bound_sq;
  if (o.index_kind == IndexKind::kFlat) return u;
  const int64_t old_size = st.size;
  const int64_t threshold = o.index_kind == IndexKind::kHnsw ? kHnswBuildSize : o.ivf_train_size;
  if ((!st.built && old_size + n >= threshold) || NeedsMoreLists(o, st, old_size + n)) {
    // A (re)build from the stored keys plus these. The bound covers every key
    // now, so nothing overflows.
    std::vector<float> all(old_size * s.d);
    KeyReader reader(s, st);
    for (int64_t i = 0; i < old_size; ++i) reader.Read(i, &all[i * s.d]);
    all.insert(all.end(), k.begin(), k.end());
    u.bound_sq = std::max(kBoundHeadroomSq * MaxNormSq(s, all.data(), old_size + n), 1e-30);
    u.aug = Augment(s, all.data(), old_size + n, u.bound_sq, &u.overflow);
    const int nlist = o.ivf_nlist > 0 ? o.ivf_nlist : IvfListsFor(old_size + n);
    u.built = BuildApproximate(s, o, nlist, u.aug.data(), old_size + n);
    if (UsesBounds(o)) {
      u.built_bounds = std::make_unique<IvfBounds>(
          IvfBounds::Build(dynamic_cast<const faiss::IndexIVF&>(*u.built), s.fp16_keys, s.d));
    }
    u.overflow.assign(n, 0);
  } else if (st.built) {
    u.aug = Augment(s, k.data(), n, st.bound_sq, &u.overflow);
  }
  return u;
}

// Puts the prepared index in place, or adds the new keys to the index.
// Caller holds mu_ exclusively.
void ApplyIndexUpdate(const Shape& s, StoreState& st, IndexUpdate& u, const float* k, int64_t n) {
  if (u.built != nullptr) {
    st.index.swap(u.built);  // the old index is freed after unlocking
    st.bounds.swap(u.built_bounds);
    st.assigner.reset();  // made for the new quantizer by the next add
    st.built = true;
    st.bound_sq = u.bound_sq;
    std::fill(st.overflow_bits.begin(), st.overflow_bits.end(), 0);
    st.overflow_ids.clear();
    if (st.mapped_fd >= 0) close(st.mapped_fd);
    st.mapped_fd = -1;
    return;
  }
  CopyMappedListsToMemory(&st);
  ReserveIndex(st.index.get(), n);
  AddToIndex(st.index.get(), &st.assigner, u.aug.empty() ? k : u.aug.data(), n);
  if (st.bounds != nullptr) ExtendBounds(s, st, st.size, k, n);
}

// Appends values (f32 rows, or `encoded` 16-bit ones), provenance and the
// bookkeeping of n entries whose keys the index already holds. Caller holds
// mu_ exclusively.
void AppendEntries(StoreState& st, const MemoryOptions& o, int d, const float* values,
                   int64_t value_stride, const std::vector<uint16_t>& encoded,
                   const Provenance* provenance, const std::vector<uint8_t>& overflow, int64_t n) {
  const int64_t old_size = st.size;
  if (o.dtype == StorageType::kFloat32) {
    for (int64_t i = 0; i < n; ++i) {
      st.values_f32.insert(st.values_f32.end(), values + i * value_stride,
                           values + i * value_stride + d);
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
}

// The store size at which the next append (re)builds the approximate index,
// or -1 if none will: appends are cut there, so that a store's index depends
// only on its keys, not on how they were batched (a replay of the same keys
// in other batches, as a restart does, builds the same index).
int64_t NextBuildSize(const MemoryOptions& o, const StoreState& st) {
  if (o.index_kind == IndexKind::kFlat) return -1;
  if (!st.built) return o.index_kind == IndexKind::kHnsw ? kHnswBuildSize : o.ivf_train_size;
  if (o.index_kind != IndexKind::kIvf || o.ivf_pq || o.ivf_nlist > 0) return -1;
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(st.index.get());
  if (ivf == nullptr) return -1;
  // IvfListsFor(keys) reaches 2 * nlist at 2 * nlist * kIvfKeysPerList keys
  // (NeedsMoreLists), unless the list count is at its cap.
  const int64_t size = 2 * static_cast<int64_t>(ivf->nlist) * kIvfKeysPerList;
  return IvfListsFor(size) >= 2 * static_cast<int64_t>(ivf->nlist) ? size : -1;
}

}  // namespace

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
  FOT_RETURN_IF_ERROR(CheckRows(s, options_, keys, key_stride, values, value_stride, n));
  absl::MutexLock writer(&write_mu_);
  for (int64_t done = 0; done < n;) {
    const int64_t build = NextBuildSize(options_, *state_);
    const int64_t size = state_->size;
    const int64_t piece = build > size && build < size + n - done ? build - size : n - done;
    FOT_RETURN_IF_ERROR(AppendPiece(keys + done * key_stride, key_stride,
                                    values + done * value_stride, value_stride, provenance + done,
                                    piece));
    done += piece;
  }
  return absl::OkStatus();
}

absl::Status KvStore::AppendPiece(const float* keys, int64_t key_stride, const float* values,
                                  int64_t value_stride, const Provenance* provenance, int64_t n) {
  const Shape s = MakeShape(head_dim_, options_);
  // Keys are used as stored (fp16 codes round them) from the start, also to
  // build the index, so that the stored keys alone determine the store.
  std::vector<float> k(n * head_dim_);
  for (int64_t i = 0; i < n; ++i) {
    float* row = &k[i * head_dim_];
    std::memcpy(row, keys + i * key_stride, head_dim_ * sizeof(float));
    if (s.fp16_keys) {
      std::vector<uint16_t> half(head_dim_);
      EncodeHalfRow(StorageType::kFloat16, row, head_dim_, half.data());
      DecodeHalfRow(StorageType::kFloat16, half.data(), head_dim_, row);
    }
  }
  std::vector<uint16_t> encoded;
  if (options_.dtype != StorageType::kFloat32) {
    encoded.resize(n * head_dim_);
    for (int64_t i = 0; i < n; ++i) {
      EncodeHalfRow(options_.dtype, values + i * value_stride, head_dim_, &encoded[i * head_dim_]);
    }
  }

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
    IndexUpdate update = PrepareIndexUpdate(s, options_, st, k, n);
    WriteLock l(&mu_);
    GrowFor(&st.provenance, n);
    GrowFor(&st.values_f32, options_.dtype == StorageType::kFloat32 ? n * head_dim_ : 0);
    GrowFor(&st.values_16, encoded.size());
    ApplyIndexUpdate(s, st, update, k.data(), n);
    // The index holds the new keys; the rest cannot fail but for bad_alloc.
    AppendEntries(st, options_, head_dim_, values, value_stride, encoded, provenance,
                  update.overflow, n);
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
  const auto start = std::chrono::steady_clock::now();  // for search_counters()
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
          budget.ivf_max_scan = budget.ivf_decode_scan = filter->max_scan;
        }
        request.max_keys = exact ? st.size : IvfScanBudget(budget, st.size, nq);
        request.k = kk;
        request.selector = ann.restricts ? &ann : nullptr;
        request.keys_scanned = &scanned;
        request.lists_bounded = &bounded;
        IvfScan(ivf, s.fp16_keys, request, d.data(), r.data());
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
  const std::chrono::nanoseconds took = std::chrono::steady_clock::now() - start;
  search_nanos_.fetch_add(took.count(), std::memory_order_relaxed);
  return absl::OkStatus();
}

SearchCounters KvStore::search_counters() const {
  return {searched_queries_.load(std::memory_order_relaxed),
          scored_keys_.load(std::memory_order_relaxed),
          bounded_lists_.load(std::memory_order_relaxed),
          search_nanos_.load(std::memory_order_relaxed)};
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
  FOT_RETURN_IF_ERROR(CheckRange("ReadKeys", first, count, st.size));
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
    FOT_RETURN_IF_ERROR(CheckRange("ReadValues", first, count, state_->size));
  }
  std::vector<int64_t> ids(count);  // entries never change once visible
  for (int64_t i = 0; i < count; ++i) ids[i] = first + i;
  return GatherValues(ids.data(), count, out);
}

absl::Status KvStore::ReadProvenance(int64_t first, int64_t count, Provenance* out) const {
  ReadLock l(&mu_);
  FOT_RETURN_IF_ERROR(CheckRange("ReadProvenance", first, count, state_->size));
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
