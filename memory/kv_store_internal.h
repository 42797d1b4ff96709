// Internals shared by the store's files (kv_store, kv_store_io, ip_reduction,
// kv_index, kv_search). Not part of the public API: include only from those.
// Includes FAISS headers, which the public header deliberately does not.
#ifndef FOTSERVE_MEMORY_KV_STORE_INTERNAL_H_
#define FOTSERVE_MEMORY_KV_STORE_INTERNAL_H_

#include <faiss/Index.h>
#include <unistd.h>

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "memory/ivf_bounds.h"
#include "memory/ivf_quantizer.h"
#include "memory/kv_store.h"
#include "memory/memory_options.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define FOT_KV_TSAN_ANNOTATE 1
#endif

namespace fot::kv_internal {

// Everything a store holds. Written only with KvStore::write_mu_ held and
// KvStore::mu_ held exclusively; read under mu_ (shared), or by the writer
// holding write_mu_ alone.
struct StoreState {
  // flat: the index. hnsw/ivf: the exact staging index until `built`, then the
  // approximate index over reduced keys (kv_store.h).
  std::unique_ptr<faiss::Index> index;
  bool built = false;
  // Built IVF with float codes: the bounds that order its probes.
  std::unique_ptr<IvfBounds> bounds;
  // Built IVF: what picks the lists of added keys (made on the first add).
  std::unique_ptr<ListAssigner> assigner;
  double bound_sq = 0;  // B^2 of the reduction
  int64_t size = 0;
  int64_t deleted = 0;
  std::vector<float> values_f32;    // dtype f32
  std::vector<uint16_t> values_16;  // dtype f16 / bf16
  std::vector<Provenance> provenance;
  std::vector<uint64_t> deleted_bits;
  std::vector<uint64_t> overflow_bits;
  std::vector<int64_t> overflow_ids;  // ascending
  std::map<int64_t, int64_t> live_per_document;
  // A trained IVF loaded with IO_FLAG_MMAP: its lists are read-only mappings of
  // this file, kept open so that Save can copy it as it is.
  int mapped_fd = -1;
  bool broken = false;  // a FAISS add failed half-way

  StoreState() = default;
  StoreState(const StoreState&) = delete;
  StoreState& operator=(const StoreState&) = delete;
  ~StoreState() {
    if (mapped_fd >= 0) close(mapped_fd);
  }
};

// An absl::Mutex lock (shared or exclusive) that also tells ThreadSanitizer
// about it: Debian's Abseil is built without TSAN annotations, so under TSAN
// the lock would otherwise be invisible and every guarded access a "race".
class ScopedLock {
 public:
  ScopedLock(absl::Mutex* mu, bool shared) : mu_(mu), shared_(shared) {
#ifdef FOT_KV_TSAN_ANNOTATE
    __tsan_mutex_pre_lock(mu_, Flags());
#endif
    if (shared_) {
      mu_->ReaderLock();
    } else {
      mu_->Lock();
    }
#ifdef FOT_KV_TSAN_ANNOTATE
    __tsan_mutex_post_lock(mu_, Flags(), 0);
#endif
  }
  ~ScopedLock() {
#ifdef FOT_KV_TSAN_ANNOTATE
    __tsan_mutex_pre_unlock(mu_, Flags());
#endif
    if (shared_) {
      mu_->ReaderUnlock();
    } else {
      mu_->Unlock();
    }
#ifdef FOT_KV_TSAN_ANNOTATE
    __tsan_mutex_post_unlock(mu_, Flags());
#endif
  }
  ScopedLock(const ScopedLock&) = delete;
  ScopedLock& operator=(const ScopedLock&) = delete;

 private:
#ifdef FOT_KV_TSAN_ANNOTATE
  unsigned Flags() const { return shared_ ? __tsan_mutex_read_lock : 0; }
#endif
  absl::Mutex* mu_;
  bool shared_;
};

struct ReadLock : ScopedLock {
  explicit ReadLock(absl::Mutex* mu) : ScopedLock(mu, /*shared=*/true) {}
};
struct WriteLock : ScopedLock {
  explicit WriteLock(absl::Mutex* mu) : ScopedLock(mu, /*shared=*/false) {}
};

inline bool TestBit(const std::vector<uint64_t>& bits, int64_t i) {
  return (bits[i >> 6] >> (i & 63)) & 1;
}
inline void SetBit(std::vector<uint64_t>* bits, int64_t i) {
  (*bits)[i >> 6] |= uint64_t{1} << (i & 63);
}

// Dimensions every helper needs.
struct Shape {
  int d;           // head_dim
  int aug;         // dimension of reduced keys in the approximate index
  bool fp16_keys;  // keys stored as fp16 codes (dtype f16/bf16, not PQ)
};

inline Shape MakeShape(int head_dim, const MemoryOptions& o) {
  Shape s{head_dim, head_dim, false};
  const bool pq = o.index_kind == IndexKind::kIvf && o.ivf_pq;
  s.fp16_keys = o.dtype != StorageType::kFloat32 && !pq;
  if (o.index_kind != IndexKind::kFlat) s.aug = head_dim + 2;
  if (pq) s.aug = (s.aug + o.ivf_pq_m - 1) / o.ivf_pq_m * o.ivf_pq_m;  // PQ needs pq_m | dim
  return s;
}

inline absl::Status FaissError(const char* what, const std::exception& e) {
  return absl::InternalError(std::string("FAISS failed in ") + what + ": " + e.what());
}

}  // namespace fot::kv_internal

#endif  // FOTSERVE_MEMORY_KV_STORE_INTERNAL_H_
