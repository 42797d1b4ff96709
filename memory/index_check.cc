#include "memory/index_check.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/invlists/DirectMap.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace fot::kv_internal {
namespace {

using faiss_idx = faiss::Index::idx_t;

// An enum field as read from the file: as its bytes, because a value outside
// the enum's range is no valid enum (loading it is undefined behaviour).
template <typename Enum>
int64_t Raw(const Enum& value) {
  static_assert(sizeof(Enum) <= sizeof(int64_t));
  std::make_signed_t<std::underlying_type_t<Enum>> raw;
  static_assert(sizeof(raw) == sizeof(Enum));
  std::memcpy(&raw, &value, sizeof raw);
  return raw;
}
// Likewise a bool, which FAISS reads as a byte of the file.
int Raw(const bool& value) {
  unsigned char raw;
  std::memcpy(&raw, &value, 1);
  return raw;
}

// The first inconsistency found, or none.
class Check {
 public:
  explicit Check(const std::string& path) : path_(path) {}

  // Records `what` as the problem unless `ok` (or a problem is recorded).
  bool That(bool ok, const std::string& what) {
    if (!ok && problem_.empty()) problem_ = what;
    return ok && problem_.empty();
  }
  bool ok() const { return problem_.empty(); }
  absl::Status Result() const {
    if (problem_.empty()) return absl::OkStatus();
    return absl::DataLossError("Load: " + path_ + " holds an inconsistent index (" + problem_ +
                               "); restore the directory from a backup");
  }

 private:
  const std::string& path_;
  std::string problem_;
};

// Codes of `d` dimensions as the store writes them: float or fp16.
void CheckFlatCodes(const faiss::Index& index, int d, bool fp16, faiss::MetricType metric,
                    Check& check) {
  check.That(index.d == d && Raw(index.metric_type) == metric, "flat index of another shape");
  if (fp16) {
    const auto* sq = dynamic_cast<const faiss::IndexScalarQuantizer*>(&index);
    if (!check.That(sq != nullptr, "not an fp16 index")) return;
    check.That(Raw(sq->sq.qtype) == faiss::ScalarQuantizer::QT_fp16 && sq->sq.d == size_t(d) &&
                   sq->code_size == size_t(2 * d) && sq->sq.code_size == sq->code_size,
               "fp16 codes of another size");
  }
  check.That(Raw(index.is_trained) == 1, "an untrained flat index");
  const auto* codes = dynamic_cast<const faiss::IndexFlatCodes*>(&index);
  if (!check.That(codes != nullptr, "not a flat index")) return;
  if (!fp16) check.That(codes->code_size == size_t(4 * d), "float codes of another size");
  check.That(index.ntotal >= 0 && codes->codes.size() == size_t(index.ntotal) * codes->code_size,
             "codes do not hold ntotal vectors");
}

// Every link a node that has the level it is linked at: a search follows a
// level's links and then reads the linked node's slots of that level.
void CheckLinks(const faiss::HNSW& g, int64_t n, Check& check) {
  for (int64_t i = 0; i < n; ++i) {
    for (int level = 0; level < g.levels[i]; ++level) {
      size_t begin, end;
      g.neighbor_range(i, level, &begin, &end);
      for (size_t j = begin; j < end; ++j) {
        const int neighbour = g.neighbors[j];
        if (neighbour == -1) continue;  // an empty slot
        if (!check.That(neighbour >= 0 && neighbour < n && g.levels[neighbour] > level,
                        "a link to a node outside the graph or below its level")) {
          return;
        }
      }
    }
  }
}

// Every node's levels and neighbour slots as HNSW lays them out, and every
// link one between nodes of its level.
void CheckGraph(const faiss::HNSW& g, int64_t n, Check& check) {
  const std::vector<int>& cum = g.cum_nneighbor_per_level;
  if (!check.That(!cum.empty() && cum[0] == 0 && cum.size() == g.assign_probas.size() + 1,
                  "neighbour counts per level do not fit the level probabilities")) {
    return;
  }
  for (size_t l = 1; l < cum.size(); ++l) check.That(cum[l] >= cum[l - 1], "neighbour counts");
  if (!check.That(g.levels.size() == size_t(n) && g.offsets.size() == size_t(n) + 1 &&
                      g.offsets[0] == 0 && g.neighbors.size() == g.offsets.back(),
                  "levels, offsets and neighbours do not hold ntotal nodes")) {
    return;
  }
  int top = -1;
  for (int64_t i = 0; i < n; ++i) {
    const int levels = g.levels[i];
    if (!check.That(levels >= 1 && size_t(levels) < cum.size() &&
                        g.offsets[i + 1] - g.offsets[i] == size_t(cum[levels]),
                    "a node's neighbour slots do not fit its levels")) {
      return;
    }
    top = std::max(top, levels - 1);
  }
  check.That(g.upper_beam == 1, "a search beam the store does not use");
  CheckLinks(g, n, check);
  check.That(n == 0 ? g.entry_point == -1
                    : g.entry_point >= 0 && g.entry_point < n &&
                          g.max_level == g.levels[g.entry_point] - 1 && g.max_level == top,
             "the entry point is not the top node");
}

void CheckHnsw(const faiss::Index& index, const Shape& s, Check& check) {
  const auto* h = dynamic_cast<const faiss::IndexHNSW*>(&index);
  if (!check.That(h != nullptr && h->storage != nullptr, "HNSW without storage")) return;
  CheckFlatCodes(*h->storage, s.aug, s.fp16_keys, faiss::METRIC_L2, check);
  check.That(h->storage->ntotal == index.ntotal && index.d == s.aug,
             "HNSW storage of another size");
  CheckGraph(h->hnsw, index.ntotal, check);
}

// Lists memory-mapped from the file (IO_FLAG_MMAP) point into the mapping at
// the offsets and sizes the file states: each must lie inside it.
bool MappedListsInside(const faiss::InvertedLists& lists) {
  const auto* mapped = dynamic_cast<const faiss::OnDiskInvertedLists*>(&lists);
  if (mapped == nullptr) return true;
  if (mapped->lists.size() != lists.nlist) return false;
  const size_t entry_bytes = lists.code_size + sizeof(faiss_idx);
  for (const faiss::OnDiskOneList& l : mapped->lists) {
    if (l.size > l.capacity || l.capacity > mapped->totsize / entry_bytes ||
        l.offset > mapped->totsize - l.capacity * entry_bytes) {
      return false;
    }
  }
  return true;
}

// Lists, ids and direct map of an IVF over `n` entries: every entry in
// exactly the list and offset its direct-map entry names. (The ids of a
// two-level quantizer's IVF are centroids, [0, nlist of the outer index).)
void CheckLists(const faiss::IndexIVF& ivf, bool direct_map, Check& check) {
  const faiss::InvertedLists* lists = ivf.invlists;
  if (!check.That(
          lists != nullptr && lists->nlist == ivf.nlist && lists->code_size == ivf.code_size,
          "inverted lists of another shape") ||
      !check.That(MappedListsInside(*lists), "a list lies outside the file")) {
    return;
  }
  const int64_t n = ivf.ntotal;
  int64_t total = 0;
  std::vector<char> seen(n, 0);
  for (size_t l = 0; l < lists->nlist && check.ok(); ++l) {
    const size_t size = lists->list_size(l);  // as the file states it: any size_t
    if (!check.That(size <= static_cast<size_t>(n - total),
                    "the lists hold more than ntotal entries") ||
        size == 0) {
      continue;
    }
    total += static_cast<int64_t>(size);
    faiss::InvertedLists::ScopedIds ids(lists, l);
    for (size_t j = 0; j < size; ++j) {
      faiss_idx id;
      std::memcpy(&id, reinterpret_cast<const char*>(ids.get()) + j * sizeof(id), sizeof(id));
      if (!check.That(id >= 0 && id < n && !seen[id], "a list holds an id outside the store")) {
        return;
      }
      seen[id] = 1;
      if (!direct_map) continue;
      const uint64_t lo = ivf.direct_map.array[id];
      check.That(faiss::lo_listno(lo) == l && faiss::lo_offset(lo) == j,
                 "the direct map does not point at an entry's list");
    }
  }
  check.That(total == n, "the lists do not hold ntotal entries");
}

void CheckQuantizer(const faiss::IndexIVF& ivf, int d, Check& check) {
  const faiss::Index* q = ivf.quantizer;
  if (!check.That(q != nullptr && q->d == d && q->ntotal == faiss_idx(ivf.nlist),
                  "a quantizer without nlist centroids")) {
    return;
  }
  if (const auto* two = dynamic_cast<const faiss::IndexIVFFlat*>(q)) {  // two-level
    check.That(two->code_size == size_t(4 * d), "two-level quantizer codes of another size");
    CheckLists(*two, /*direct_map=*/false, check);
    CheckQuantizer(*two, d, check);
    return;
  }
  CheckFlatCodes(*q, d, /*fp16=*/false, faiss::METRIC_L2, check);
}

void CheckCodes(const faiss::IndexIVF& ivf, const Shape& s, const MemoryOptions& o, Check& check) {
  if (o.ivf_pq) {
    const auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(&ivf);
    if (!check.That(pq != nullptr, "not an IVF-PQ index")) return;
    const faiss::ProductQuantizer& p = pq->pq;
    check.That(Raw(pq->by_residual) <= 1 && p.d == size_t(s.aug) && p.M == size_t(o.ivf_pq_m) &&
                   p.nbits == 8 && p.ksub == 256 && p.M * p.dsub == p.d && p.code_size == p.M &&
                   pq->code_size == p.code_size && p.centroids.size() == p.M * p.ksub * p.dsub,
               "PQ codes of another shape");
    return;
  }
  if (s.fp16_keys) {
    const auto* sq = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(&ivf);
    check.That(sq != nullptr && Raw(sq->sq.qtype) == faiss::ScalarQuantizer::QT_fp16 &&
                   sq->sq.d == size_t(s.aug) && Raw(sq->by_residual) == 0 &&
                   sq->code_size == size_t(2 * s.aug),
               "fp16 IVF codes of another shape");
    return;
  }
  check.That(dynamic_cast<const faiss::IndexIVFFlat*>(&ivf) != nullptr &&
                 ivf.code_size == size_t(4 * s.aug),
             "float IVF codes of another shape");
}

void CheckIvf(const faiss::Index& index, const Shape& s, const MemoryOptions& o, Check& check) {
  const auto* ivf = dynamic_cast<const faiss::IndexIVF*>(&index);
  if (!check.That(ivf != nullptr && index.d == s.aug && ivf->nlist > 0, "not an IVF index")) return;
  check.That(Raw(ivf->direct_map.type) == faiss::DirectMap::Array &&
                 ivf->direct_map.array.size() == size_t(index.ntotal),
             "the direct map does not hold ntotal entries");
  CheckCodes(*ivf, s, o, check);
  CheckQuantizer(*ivf, s.aug, check);
  CheckLists(*ivf, /*direct_map=*/true, check);
}

}  // namespace

absl::Status CheckLoadedIndex(const faiss::Index& index, const Shape& s, const MemoryOptions& o,
                              bool built, const std::string& path) {
  Check check(path);
  // Every index the store writes is trained (or needs no training): the
  // next Append must not fail on it.
  check.That(Raw(index.is_trained) == 1, "an untrained index");
  if (!built || o.index_kind == IndexKind::kFlat) {
    CheckFlatCodes(index, s.d, s.fp16_keys, faiss::METRIC_INNER_PRODUCT, check);
  } else if (o.index_kind == IndexKind::kHnsw) {
    CheckHnsw(index, s, check);
  } else {
    CheckIvf(index, s, o, check);
  }
  return check.Result();
}

}  // namespace fot::kv_internal
