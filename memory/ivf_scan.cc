#include "memory/ivf_scan.h"

#include <cblas.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <utility>
#include <vector>

#include "base/half_float.h"
#include "memory/ivf_bounds.h"
#include "memory/memory_options.h"

namespace fot {
namespace {

using faiss_idx = faiss::Index::idx_t;

// Queries scored against a list per matrix product: the block of scores
// (64 x list size) stays in cache while it is offered to the queries' top k.
// (Scoring every list first and selecting after streamed a 33 MB score buffer
// through memory twice per store: a third of a window's time at 128k keys.)
constexpr int64_t kQueryBlock = 64;
// Lists probed by fewer queries than this are scored key by key: OpenBLAS's
// sgemm packs both operands first, which was 15% of a generated token's time
// at 1M keys.
constexpr int64_t kMinQueriesForGemm = 4;
// Scores skipped at once when none of them reaches the query's threshold.
constexpr int64_t kOfferBlock = 32;
// Searches of at most kFewQueries queries (a generated token's) plan from
// the uint8 copy of the list estimates' table (PlanFewQuery): the float
// table is read once per search, so for one query it cost more than the
// scan itself (8 MB per store at 1M keys, against 2% of the keys' 2.8 MB).
constexpr int64_t kFewQueries = kIvfDecodeQueries;

float Dot(const float* a, const float* b, int n) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// <q, key> for a key stored as fp16, decoded on the fly: a generated token's
// scan is one pass over its keys, and decoding each into a buffer first was
// a third of it. `decoded` [n] is scratch for the portable path.
float DotHalf(const float* q, const uint16_t* key, int n, float* decoded) {
#if defined(__AVX512F__)
  (void)decoded;
  __m512 acc = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 k = _mm512_maskz_cvtph_ps(
        0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(key + i)));
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), k, acc);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  for (; i < n; ++i) sum += q[i] * HalfToFloat(key[i]);
  return sum;
#else
  HalfToFloatRow(key, n, decoded);
  return Dot(q, decoded, n);
#endif
}

// The codes and ids of the lists a batch probes, fetched once (get_codes may
// map or copy a list) and released at the end. Held per probed list, not per
// list of the index: a generated token's search probes a few hundred of
// 16384 lists, and arrays over all of them cost more than its scan.
class ListViews {
 public:
  ListViews(const faiss::InvertedLists* lists, size_t probed) : lists_(lists), views_(probed) {}
  ~ListViews() {
    for (const View& v : views_) {
      if (v.list < 0) continue;
      lists_->release_codes(v.list, v.codes);
      lists_->release_ids(v.list, v.ids);
    }
  }
  ListViews(const ListViews&) = delete;
  ListViews& operator=(const ListViews&) = delete;

  // Opens list l as probed list i.
  void Open(size_t i, int64_t l) {
    View& v = views_[i];
    v.list = l;
    v.codes = lists_->get_codes(l);
    v.ids = lists_->get_ids(l);
    v.code_view = v.codes;
    v.id_view = v.ids;
    // Memory-mapped lists (IO_FLAG_MMAP) lie in the file as FAISS wrote it,
    // at whatever offsets the bytes before them leave: a list's ids follow
    // its codes, and fp16 codes of d + 2 = 10 dimensions are 20 bytes each.
    // Reading them in place would be misaligned loads (undefined behaviour),
    // so a misaligned list is read from an aligned copy.
    const size_t n = lists_->list_size(l);
    if (reinterpret_cast<uintptr_t>(v.ids) % alignof(faiss_idx) != 0) {
      v.id_view = Copy(aligned_ids_, v.ids, n * sizeof(faiss_idx));
    }
    if (reinterpret_cast<uintptr_t>(v.codes) % alignof(float) != 0) {
      v.code_view =
          reinterpret_cast<const uint8_t*>(Copy(aligned_codes_, v.codes, n * lists_->code_size));
    }
  }
  const uint8_t* codes(size_t i) const { return views_[i].code_view; }
  const faiss_idx* ids(size_t i) const { return views_[i].id_view; }

 private:
  struct View {
    int64_t list = -1;  // -1: not opened
    // As get_codes / get_ids returned them (what release_* takes back), and
    // what the scan reads: the list itself, or its aligned copy.
    const uint8_t* codes = nullptr;
    const faiss_idx* ids = nullptr;
    const uint8_t* code_view = nullptr;
    const faiss_idx* id_view = nullptr;
  };

  // `bytes` bytes from `from`, copied into a new element of `copies`
  // (storage aligned for T); the copy.
  template <typename T>
  static const T* Copy(std::vector<std::vector<T>>& copies, const void* from, size_t bytes) {
    std::vector<T>& copy = copies.emplace_back((bytes + sizeof(T) - 1) / sizeof(T));
    if (bytes > 0) std::memcpy(copy.data(), from, bytes);
    return copy.data();
  }

  const faiss::InvertedLists* lists_;
  std::vector<View> views_;
  // Each copy's buffer stays where it is when `copies` grows.
  std::vector<std::vector<float>> aligned_codes_;
  std::vector<std::vector<faiss_idx>> aligned_ids_;
};

// A candidate in the final order: higher score first, and among equal scores
// the higher id.
struct Candidate {
  float score;
  int64_t id;
};
constexpr auto Better = [](const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id > b.id);
};

// Samples kSamples values of v[0..n) into *samples, highest first, and
// returns the index of the first (highest) sample for which enough(sample)
// holds, or kSamples when none does; enough must hold for every lower value
// once it holds. Binary search: one call of enough (a SIMD pass) per step.
template <int kSamples, typename Enough>
int FirstSampleWith(const float* v, int64_t n, Enough enough,
                    std::array<float, kSamples>* samples) {
  for (int i = 0; i < kSamples; ++i) (*samples)[i] = v[i * n / kSamples];
  std::sort(samples->begin(), samples->end(), std::greater<>());  // NaN-free: see callers
  int lo = 0, hi = kSamples;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (enough((*samples)[mid])) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

// The highest of 32 values sampled from v[0..n) that at least m of the n
// values reach (>=), or -inf when none does. Any such value is a safe cut for
// keeping the best m: everything below it has m better. The samples are
// sorted and the cut found by binary search, each step one SIMD counting pass
// (nth_element's unpredictable branches cost several times more); with the
// samples ~n/32 ranks apart the cut lands within a few ranks of the m-th best.
float SampledThreshold(const float* v, int64_t n, int64_t m) {
  constexpr int kSamples = 32;
  std::array<float, kSamples> samples;
  const int first = FirstSampleWith<kSamples>(
      v, n,
      [&](float pivot) {
        int64_t count = 0;
#pragma omp simd reduction(+ : count)
        for (int64_t j = 0; j < n; ++j) count += v[j] >= pivot ? 1 : 0;
        return count >= m;
      },
      &samples);
  return first < kSamples ? samples[first] : -std::numeric_limits<float>::infinity();
}

// Each query's top k, collected in a buffer of about 2k candidates above a
// running threshold, with one lock per query because the lists a query
// probes are scanned by different threads.
//
// Why not a heap: a query meets ~k ln(N/k) candidates that beat its current
// k-th best (about 600 of 16k at 128k keys, k = 128), and each heap
// replacement is a chain of unpredictable branches: 40% of a window's search
// time. Appending to a buffer is a branch-free store; when the buffer passes
// 2k, Shrink raises the threshold and drops what fell below it.
//
// The final order is (score, id), higher first: FAISS's CMin heap order, so
// results equal an exact search's. It is a total order, so the top k does not
// depend on the order the lists are scanned in.
class TopK {
 public:
  TopK(int64_t nq, int k, const faiss::IDSelector* selector)
      : k_(k),
        capacity_(2 * int64_t{k} + kOfferBlock),
        selector_(selector),
        scores_(std::make_unique_for_overwrite<float[]>(nq * capacity_)),
        ids_(std::make_unique_for_overwrite<int64_t[]>(nq * capacity_)),
        size_(nq, 0),
        threshold_(nq, -std::numeric_limits<float>::infinity()),
        locks_(new std::atomic_flag[nq]),
        scratch_(std::make_unique_for_overwrite<Candidate[]>(omp_get_max_threads() * capacity_)) {}

  // Offers scores v[0..n) of the keys `list_ids` to query q.
  void Offer(int64_t q, const float* v, const faiss_idx* list_ids, int64_t n) {
    // A spin lock: two threads rarely meet on one query, and wait/notify's
    // bookkeeping cost 5% of the scan.
    while (locks_[q].test_and_set(std::memory_order_acquire)) {
      while (locks_[q].test(std::memory_order_relaxed)) {
      }
    }
    float* scores = Scores(q);
    int64_t* ids = Ids(q);
    int64_t size = size_[q];
    float threshold = threshold_[q];
    const faiss::IDSelector* const selector = selector_;  // a local: the stores cannot alias it
    for (int64_t j0 = 0; j0 < n; j0 += kOfferBlock) {
      const int64_t end = std::min(n, j0 + kOfferBlock);
      // Once the threshold settles few scores reach it: skip whole blocks at SIMD speed.
      int reaching = 0;
#pragma omp simd reduction(+ : reaching)
      for (int64_t j = j0; j < end; ++j) reaching += v[j] >= threshold ? 1 : 0;
      if (reaching == 0) continue;
      // Branch-free: which scores reach is unpredictable early in a scan.
      // The comparison also drops NaN, which has no place in the order.
      if (selector == nullptr) {
        for (int64_t j = j0; j < end; ++j) {
          scores[size] = v[j];
          ids[size] = list_ids[j];
          size += static_cast<int64_t>(v[j] >= threshold);
        }
      } else {
        for (int64_t j = j0; j < end; ++j) {
          if (v[j] >= threshold && selector->is_member(list_ids[j])) {
            scores[size] = v[j];
            ids[size++] = list_ids[j];
          }
        }
      }
      if (size > 2 * k_) threshold = Shrink(scores, ids, &size);  // room for one more block
    }
    size_[q] = size;
    threshold_[q] = threshold;
    locks_[q].clear(std::memory_order_release);
  }

  // Writes each query's best k, best first, into scores/ids [nq, k]; unfilled
  // entries get id -1 and score -inf.
  void Finish(int64_t nq, float* out_scores, int64_t* out_ids) {
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < nq; ++q) {
      float* scores = Scores(q);
      int64_t* ids = Ids(q);
      int64_t size = size_[q];
      if (size > k_) Shrink(scores, ids, &size);  // fewer to gather and select
      Candidate* c = Gather(scores, ids, size);
      if (size > k_) {
        std::nth_element(c, c + k_ - 1, c + size, Better);
        size = k_;
      }
      std::sort(c, c + size, Better);
      for (int64_t j = 0; j < size; ++j) {
        out_scores[q * k_ + j] = c[j].score;
        out_ids[q * k_ + j] = c[j].id;
      }
      for (int64_t j = size; j < k_; ++j) {
        out_scores[q * k_ + j] = -std::numeric_limits<float>::infinity();
        out_ids[q * k_ + j] = -1;
      }
    }
  }

 private:
  // Raises the threshold to a sampled cut that keeps at least k, and drops
  // what fell below it: everything dropped has k better candidates, so the
  // final top k is unchanged.
  float Shrink(float* scores, int64_t* ids, int64_t* size) const {
    const int64_t n = *size;
    float threshold = SampledThreshold(scores, n, k_);
    int64_t kept = 0;
    for (int64_t j = 0; j < n; ++j) {
      scores[kept] = scores[j];
      ids[kept] = ids[j];
      kept += scores[j] >= threshold ? 1 : 0;
    }
    *size = kept;
    // Many scores tied at the threshold can leave the buffer full; the
    // caller's next block must still fit, so fall back to an exact cut.
    if (kept > 2 * k_) {
      Candidate* c = Gather(scores, ids, kept);
      std::nth_element(c, c + k_ - 1, c + kept, Better);
      for (int64_t j = 0; j < k_; ++j) {
        scores[j] = c[j].score;
        ids[j] = c[j].id;
      }
      *size = k_;
      threshold = c[k_ - 1].score;
    }
    return threshold;
  }

  // The calling thread's scratch, holding buffer entries [0, n) as candidates.
  Candidate* Gather(const float* scores, const int64_t* ids, int64_t n) const {
    Candidate* c = scratch_.get() + omp_get_thread_num() * capacity_;
    for (int64_t j = 0; j < n; ++j) c[j] = {scores[j], ids[j]};
    return c;
  }
  float* Scores(int64_t q) { return scores_.get() + q * capacity_; }
  int64_t* Ids(int64_t q) { return ids_.get() + q * capacity_; }

  const int64_t k_;
  const int64_t capacity_;
  const faiss::IDSelector* selector_;
  std::unique_ptr<float[]> scores_;
  std::unique_ptr<int64_t[]> ids_;
  std::vector<int64_t> size_;
  std::vector<float> threshold_;
  std::unique_ptr<std::atomic_flag[]> locks_;
  std::unique_ptr<Candidate[]> scratch_;  // per thread, capacity_ each
};

// Keys in lists whose estimate reaches `cut`.
int64_t KeysReaching(const float* row, const int64_t* sizes, int64_t nlist, float cut) {
  int64_t keys = 0;
#pragma omp simd reduction(+ : keys)
  for (int64_t l = 0; l < nlist; ++l) keys += row[l] >= cut ? sizes[l] : 0;
  return keys;
}

// One query's plan into plan[0..n), returned n: the lists of highest
// estimate (ties to the lower list) until they hold `budget` keys, or every
// list with keys; at most max_lists of them. `order` is scratch [nlist].
//
// No sort of all lists: a cut between two of 64 sampled estimates is found
// by binary search, each step one SIMD pass summing the keys of the lists
// reaching it (a comparison sort of 16384 lists per query was most of a
// window's search at 1M keys); only the lists between the two cuts are
// sorted to end the plan exactly at the budget.
int64_t PlanQuery(const float* row, const int64_t* sizes, int64_t nlist, int64_t budget,
                  int64_t max_lists, int64_t* plan, int64_t* order) {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  constexpr int kSamples = 64;
  std::array<float, kSamples> samples;
  // The first (highest) sample whose reaching lists hold the budget.
  const int lo = FirstSampleWith<kSamples>(
      row, nlist, [&](float cut) { return KeysReaching(row, sizes, nlist, cut) >= budget; },
      &samples);
  const float above = lo == 0 ? std::numeric_limits<float>::infinity() : samples[lo - 1];
  const float below = lo < kSamples ? samples[lo] : kNone;
  int64_t n = 0, m = 0, keys = 0;
  for (int64_t l = 0; l < nlist; ++l) {
    if (row[l] == kNone || sizes[l] == 0) continue;  // empty lists
    if (row[l] >= above) {
      plan[n++] = l;
      keys += sizes[l];
    } else if (row[l] >= below) {
      order[m++] = l;
    }
  }
  const auto higher = [row](int64_t x, int64_t y) {
    return row[x] > row[y] || (row[x] == row[y] && x < y);
  };
  std::sort(order, order + m, higher);
  for (int64_t i = 0; i < m && keys < budget; ++i) {
    plan[n++] = order[i];
    keys += sizes[order[i]];
  }
  if (n > max_lists) {
    std::nth_element(plan, plan + max_lists - 1, plan + n, higher);
    n = max_lists;
  }
  return n;
}

// One query's plan from the uint8 table (IvfBounds::ScoreCoarse), the same
// as PlanQuery over every list's float estimate: lists whose coarse estimate
// reaches a cut c hold the budget, and their float estimates are at least
// c - E (E: the coarse table's error bound), so the float plan takes only
// lists at or above c - E, whose coarse estimates reach c - 2E. Those
// candidates are scored from the float table and planned. *bounded counts
// the estimates computed.
std::vector<int64_t> PlanFewQuery(const IvfBounds& bounds, int64_t nlist, const float* query,
                                  int dim, int64_t budget, int64_t max_lists, int64_t* bounded) {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  std::vector<float> prepared(2 * dim), coarse(nlist);
  bounds.Prepare(query, prepared.data());
  const float error = bounds.ScoreCoarse(prepared.data(), coarse.data());
  const int64_t* sizes = bounds.list_keys();
  constexpr int kSamples = 64;
  std::array<float, kSamples> samples;
  const int first = FirstSampleWith<kSamples>(
      coarse.data(), nlist,
      [&](float cut) { return KeysReaching(coarse.data(), sizes, nlist, cut) >= budget; },
      &samples);
  const float floor = first < kSamples ? samples[first] - 2 * error : kNone;
  std::vector<int64_t> candidates;
  for (int64_t l = 0; l < nlist; ++l) {
    if (coarse[l] != kNone && sizes[l] > 0 && coarse[l] >= floor) candidates.push_back(l);
  }
  const auto m = static_cast<int64_t>(candidates.size());
  std::vector<float> estimates(m);
  bounds.ScoreLists(prepared.data(), candidates.data(), m, estimates.data());
  std::vector<int64_t> candidate_sizes(m), scratch(2 * m);
  for (int64_t i = 0; i < m; ++i) candidate_sizes[i] = sizes[candidates[i]];
  *bounded += nlist / 4 + m;  // a coarse estimate reads a quarter of a float one's bytes
  const int64_t n = PlanQuery(estimates.data(), candidate_sizes.data(), m, budget, max_lists,
                              scratch.data(), scratch.data() + m);
  std::vector<int64_t> plan(n);
  for (int64_t i = 0; i < n; ++i) plan[i] = candidates[scratch[i]];
  return plan;
}

// Each query's plan over all lists: one product of the queries with every
// list's box (IvfBounds::Score), in blocks of rows, then PlanQuery per query.
std::vector<std::vector<int64_t>> PlanManyQueries(const faiss::IndexIVF& index,
                                                  const IvfScanRequest& r, int64_t max_lists,
                                                  int64_t* bounded) {
  const auto nlist = static_cast<int64_t>(index.nlist);
  const int64_t* sizes = r.bounds->list_keys();
  const int64_t block_rows = std::min<int64_t>(64, r.nq);
  const int64_t blocks = (r.nq + block_rows - 1) / block_rows;
  std::vector<std::vector<int64_t>> plans(r.nq);
  const int threads = omp_get_max_threads();
  auto estimates = std::make_unique_for_overwrite<float[]>(threads * block_rows * nlist);
  auto scratch = std::make_unique_for_overwrite<int64_t[]>(threads * 2 * nlist);
  std::atomic<bool> failed = false;
#pragma omp parallel for schedule(dynamic, 1) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int t = omp_get_thread_num();
    const int64_t first = b * block_rows, rows = std::min(block_rows, r.nq - first);
    float* block = estimates.get() + t * block_rows * nlist;
    int64_t* plan = scratch.get() + t * 2 * nlist;
    try {  // nothing may throw out of the parallel region
      r.bounds->Score(r.queries + first * r.dim, rows, block);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t n =
            PlanQuery(block + i * nlist, sizes, nlist, r.max_keys, max_lists, plan, plan + nlist);
        plans[first + i].assign(plan, plan + n);
      }
    } catch (const std::bad_alloc&) {
      failed = true;
    }
  }
  if (failed) throw std::bad_alloc();
  *bounded += r.nq * nlist;
  return plans;
}

// Each query's probe plan, into probes [nq, width] padded with -1. Returns
// width, and the keys all plans hold in *planned_keys.
//
// Why a key budget and not a list count: lists with wide boxes (the large
// ones) rank high, so a fixed count of lists scans a varying share of keys.
int PlanProbes(const faiss::IndexIVF& index, const IvfScanRequest& r,
               std::vector<faiss_idx>* probes, int64_t* planned_keys, int64_t* bounded) {
  const int64_t max_lists = std::clamp<int64_t>(r.max_lists, 1, index.nlist);
  std::vector<std::vector<int64_t>> plans;
  if (r.nq <= kFewQueries) {
    for (int64_t q = 0; q < r.nq; ++q) {
      plans.push_back(PlanFewQuery(*r.bounds, index.nlist, r.queries + q * r.dim, r.dim, r.max_keys,
                                   max_lists, bounded));
    }
  } else {
    plans = PlanManyQueries(index, r, max_lists, bounded);
  }
  size_t width = 1;
  for (const auto& plan : plans) width = std::max(width, plan.size());
  probes->assign(r.nq * width, -1);
  *planned_keys = 0;
  for (int64_t q = 0; q < r.nq; ++q) {
    for (size_t p = 0; p < plans[q].size(); ++p) {
      (*probes)[q * width + p] = plans[q][p];
      *planned_keys += static_cast<int64_t>(index.invlists->list_size(plans[q][p]));
    }
  }
  return static_cast<int>(width);
}

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

// Lists in ascending order, each with its queries in ascending order. A
// window's plans cover most lists, so they are counted per list; a few
// queries' plans (a generated token's: a few hundred of 16384 lists) are
// sorted instead, as arrays over all lists would cost more than their scan.
ProbedLists GroupByList(const faiss::InvertedLists& invlists, const faiss_idx* probes, int64_t nq,
                        int nprobe) {
  const auto nlist = static_cast<int64_t>(invlists.nlist);
  ProbedLists g;
  const auto add_list = [&](int64_t l, int64_t first, int64_t count) {
    const auto size = static_cast<int64_t>(invlists.list_size(l));
    if (count == 0 || size == 0) return false;
    g.lists.push_back({l, size, first, count});
    g.max_size = std::max(g.max_size, size);
    g.max_count = std::max(g.max_count, count);
    return true;
  };
  if (nq * nprobe * 8 < nlist) {
    std::vector<std::pair<faiss_idx, int64_t>> pairs;  // (list, query)
    for (int64_t i = 0; i < nq * nprobe; ++i) {
      if (probes[i] >= 0) pairs.emplace_back(probes[i], i / nprobe);
    }
    std::sort(pairs.begin(), pairs.end());
    for (size_t i = 0; i < pairs.size();) {
      size_t end = i;
      while (end < pairs.size() && pairs[end].first == pairs[i].first) ++end;
      const auto first = static_cast<int64_t>(g.queries.size());
      if (add_list(pairs[i].first, first, static_cast<int64_t>(end - i))) {
        for (; i < end; ++i) g.queries.push_back(pairs[i].second);
      }
      i = end;
    }
    return g;
  }
  std::vector<int64_t> count(nlist, 0);
  for (int64_t i = 0; i < nq * nprobe; ++i) {
    if (probes[i] >= 0) ++count[probes[i]];
  }
  std::vector<int64_t> at(nlist, -1);  // list -> next free slot in g.queries
  int64_t total = 0;
  for (int64_t l = 0; l < nlist; ++l) {
    if (!add_list(l, total, count[l])) continue;
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
  std::vector<faiss_idx> probes;
  int64_t planned_keys = 0, bounded = 0;
  const int nprobe = PlanProbes(index, r, &probes, &planned_keys, &bounded);
  if (r.keys_scanned != nullptr) *r.keys_scanned = planned_keys;
  if (r.lists_bounded != nullptr) *r.lists_bounded = bounded;
  const ProbedLists g = GroupByList(*index.invlists, probes.data(), r.nq, nprobe);
  ListViews views(index.invlists, g.lists.size());
  for (size_t i = 0; i < g.lists.size(); ++i) views.Open(i, g.lists[i].list);
  TopK top(r.nq, r.k, r.selector);

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
    const uint8_t* codes = views.codes(i);
    const faiss_idx* list_ids = views.ids(i);
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
        for (int64_t m = 0; m < l.count; ++m) {
          const float* query = r.queries + list_queries[m] * dim;
          v[m * l.size + j] = fp16_codes ? DotHalf(query, f16 + j * stride, dim, decoded)
                                         : Dot(query, f32 + j * stride, dim);
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
  top.Finish(r.nq, scores, ids);
}

}  // namespace fot
