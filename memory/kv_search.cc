#include "memory/kv_search.h"

#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/utils/distances.h>

#include <limits>
#include <tuple>
#include <utility>

#include "memory/kv_index.h"

namespace fot::kv_internal {
namespace {

// Keys decoded per exact-search block. Each block restarts FAISS's top-k heaps
// and is merged after; 64k-key blocks (16 MB at d=64) cost 1.03-1.18x a bare
// IndexFlatIP search, 16k-key blocks 1.44-1.72x (bench/memory_bench.cc).
constexpr int64_t kExactBlock = 65536;
constexpr int kPqRerankFactor = 8;  // IVF-PQ fetches 8k candidates to re-rank

}  // namespace

KeyReader::KeyReader(const Shape& s, const StoreState& st) : s_(s) {
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

void KeyReader::Read(int64_t id, float* out) {
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
  Decode(codes_ + id * code_size_, out);  // only here: codes_ is null for IVF
}

const float* KeyReader::Contiguous(int64_t first) const {
  if (codes_ == nullptr || s_.fp16_keys || s_.aug != s_.d) return nullptr;
  return reinterpret_cast<const float*>(codes_) + first * s_.d;
}

void KeyReader::Decode(const uint8_t* code, float* out) const {
  if (s_.fp16_keys) {
    const auto* h = reinterpret_cast<const uint16_t*>(code);
    HalfToFloatRow(h, s_.d, out);
  } else {
    std::memcpy(out, code, s_.d * sizeof(float));
  }
}

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

}  // namespace fot::kv_internal
