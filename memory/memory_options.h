// Options of one FAISS-backed memory store (memory/kv_store.h): which index
// holds the keys, how keys and values are stored, and the index parameters.
//
// Index kinds (all search by inner product <query, key>):
//   flat  exact search over every key. Add ≈ millions/s; search cost grows
//         linearly with the memory. The reference for the other two.
//   ivf   inverted file, trained when ivf_train_size keys exist (until then
//         the keys are searched exactly) and, with automatic lists, retrained
//         as the memory grows. Fast to add (~10^5/s on this machine kind), so
//         it is the approximate kind for streaming ingest.
//   hnsw  graph index. Slow to add (a few thousand keys/s at d=64..128 on a
//         generic FAISS 1.7.3 build) but fast to search: for memories built
//         once and searched often. The first kHnswBuildSize keys are searched
//         exactly; the graph is built when that many exist.
//
// Storage types: StorageType applies to values, and to keys where FAISS 1.7.3
// can store them: f32 keys use float codes, f16 keys fp16 scalar-quantizer
// codes. FAISS 1.7.3 has no bfloat16 codes, so with kBFloat16 the KEYS are
// stored as float16 (same 2 bytes, more mantissa, smaller range: keys beyond
// ±65504 are rejected at Append) and the VALUES as bfloat16. IVF with PQ codes
// stores keys as PQ codes whatever the dtype.
//
// Thread safety: plain data and pure functions; safe from any thread.
#ifndef FOTSERVE_MEMORY_MEMORY_OPTIONS_H_
#define FOTSERVE_MEMORY_MEMORY_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/half_float.h"

namespace fot {

enum class IndexKind { kFlat, kHnsw, kIvf };
enum class StorageType { kFloat32, kFloat16, kBFloat16 };

// HNSW stores (and IVF stores, below ivf_train_size) search their keys exactly
// until this many keys exist; then the graph is built from all of them. Small
// graphs buy nothing over exact search, and the first keys also fix the norm
// bound of the inner-product-to-L2 reduction (kv_store.h).
inline constexpr int64_t kHnswBuildSize = 1024;

// IVF with automatic lists (ivf_nlist 0) is first trained at this many keys.
inline constexpr int64_t kIvfAutoTrainSize = 10240;

// Automatic IVF lists hold this many keys to twice as many. Small lists have
// tight boxes (memory/ivf_bounds.h), so a query finds its best keys in fewer
// keys scanned: on fot-dict at 262k keys and 5% scanned (lists ranked by the
// strict box bound), 256 keys per list answered 92.5%, 64 per list 96.5%
// (exact search 96.5%). The estimates cost 2
// key-sized products per list: 3.1% of the keys' work at 64 per list.
inline constexpr int64_t kIvfKeysPerList = 64;

// A query may always scan this many keys, whatever ivf_max_scan says: small
// memories are cheap to scan, and 5% of them is too few to be found reliably.
inline constexpr int64_t kIvfMinScanKeys = 4096;

// The number of lists an automatic IVF index over `keys` keys is trained
// with: the largest power of two <= keys / kIvfKeysPerList, at least 1.
int IvfListsFor(int64_t keys);

// Searches of at most this many query rows are taken for a generated token's
// (a memory layer searches each kv head with the rows of its query heads for
// the new tokens: 1 to 8 per token in the models here) and scan
// ivf_decode_scan of the keys instead of ivf_max_scan.
inline constexpr int64_t kIvfDecodeQueries = 16;

struct MemoryOptions;
// Keys each query of a search of nq queries over an IVF store of `keys` keys
// may scan (ivf_max_scan, or ivf_decode_scan for nq <= kIvfDecodeQueries).
int64_t IvfScanBudget(const MemoryOptions& options, int64_t keys, int64_t nq);

struct MemoryOptions {
  IndexKind index_kind = IndexKind::kFlat;
  StorageType dtype = StorageType::kFloat16;  // keys AND values (see above)

  // HNSW. FAISS 1.7.3's search width does not grow with k, so ef_search must
  // cover the K a memory layer asks for, and the graph must be built wide
  // enough. Recall@128 on the mid-size model's keys (bench/memory_bench.cc):
  // with ef_construction 40 and ef_search 512, 0.95 at 8k keys but 0.70 at
  // 32k; with 128 and 1024, 0.996 at 8k and 0.951 at 32k (building at ~16k
  // keys/s over 16 stores, 2 cores). recall@10 on key-like data: 0.98-0.99.
  int hnsw_m = 32;
  int hnsw_ef_construction = 128;
  int hnsw_ef_search = 1024;

  // IVF. ivf_nlist 0 (the default) lets the number of lists follow the memory:
  // IvfListsFor(keys) lists when trained, and the index is retrained whenever
  // the memory has grown enough for twice as many lists, so lists hold
  // kIvfKeysPerList to twice that at every size. A fixed ivf_nlist > 0 trains
  // once. ivf_train_size 0 means 40 * ivf_nlist keys (at least 40 * 256 with
  // PQ, whose codebooks have 256 entries), and kIvfAutoTrainSize with
  // automatic lists.
  //
  // A query probes the lists with the highest bounds of its inner products
  // (ivf_scan.h), until they hold ivf_max_scan of the store's keys (at least
  // kIvfMinScanKeys) or ivf_nprobe lists (0, auto: no list cap). Measured
  // with the queries models/fot-dict issues while answering, at 262k keys:
  // 5% of the keys recover 0.999 of the exact top-64's attention mass.
  // max_scan=1 (or nprobe=nlist with max_scan=1) probes every list: exact.
  //
  // A generated token's search (kIvfDecodeQueries) scans ivf_decode_scan
  // instead: a window's 512 queries share each list they read, a token pays
  // for its lists alone, and its time is what a user waits for per token.
  int ivf_nlist = 0;
  int ivf_nprobe = 0;
  double ivf_max_scan = 0.05;
  double ivf_decode_scan = 0.02;
  int64_t ivf_train_size = 0;
  // PQ codes instead of float/fp16 codes: ~8x smaller keys, but lossy. Measured
  // recall@10 on key-like data is only ~0.6 (pq_m auto) to ~0.8 (2 dims per
  // code), and PQ training (256 centroids per sub-quantizer) takes seconds.
  // PQ codes cannot be decoded exactly for a retraining: with PQ, automatic
  // lists mean a fixed 256.
  bool ivf_pq = false;
  int ivf_pq_m = 0;  // PQ sub-quantizers (bytes per key); 0: ceil((head_dim + 2) / 4)

  bool operator==(const MemoryOptions&) const = default;
};

// OK when `options` can build a store of `head_dim`-dimensional keys; else
// InvalidArgument naming the bad field, its value and the accepted range.
// Only the fields of options.index_kind are checked.
[[nodiscard]] absl::Status ValidateMemoryOptions(const MemoryOptions& options, int head_dim);

// The options a store actually uses: defaults (0 = automatic) filled in.
// Requires ValidateMemoryOptions(options, head_dim).ok().
MemoryOptions ResolveMemoryOptions(const MemoryOptions& options, int head_dim);

// "flat" (alias "exact"), "hnsw", "ivf".
absl::StatusOr<IndexKind> ParseIndexKind(std::string_view name);
std::string_view IndexKindName(IndexKind kind);

// "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16".
absl::StatusOr<StorageType> ParseStorageType(std::string_view name);
std::string_view StorageTypeName(StorageType type);

// Parses "KIND" or "KIND:key=value,key=value" into *options. Sets index_kind
// and the listed parameters; everything else in *options is left as it was,
// so callers start from MemoryOptions{} (or a session's options). Keys:
//   any kind: dtype=f32|f16|bf16
//   hnsw:     m, ef_construction, ef_search
//   ivf:      nlist (a number, or auto = 0), nprobe (a number, or auto = 0),
//             max_scan and decode_scan (shares of keys in (0, 1]; max_scan
//             alone sets both), train_size, pq=0|1, pq_m (pq_m > 0 implies
//             pq=1)
// e.g. "hnsw:m=32,ef_search=64", "ivf:nlist=1024,nprobe=32,pq_m=16".
// Syntax errors are InvalidArgument; *options is unchanged on error. Values are
// range-checked by ValidateMemoryOptions, not here (the head_dim is unknown),
// except that an nlist given without nprobe lowers a set nprobe to at most nlist.
[[nodiscard]] absl::Status ParseIndexSpec(std::string_view spec, MemoryOptions* options);

// The canonical spec of `options`, e.g.
// "ivf:nlist=auto,nprobe=auto,max_scan=0.05,train_size=10240,pq=0,dtype=f16".
// ParseIndexSpec(DescribeOptions(o), &p) from any p gives p == o for the fields
// of o.index_kind and dtype.
std::string DescribeOptions(const MemoryOptions& options);

// Bytes per stored scalar of `type` (4 or 2).
int BytesPerScalar(StorageType type);

// Largest finite magnitude `type` represents.
float MaxFinite(StorageType type);

// Converts n floats to 16-bit `type` (kFloat16 or kBFloat16) and back.
void EncodeHalfRow(StorageType type, const float* in, int64_t n, uint16_t* out);
void DecodeHalfRow(StorageType type, const uint16_t* in, int64_t n, float* out);

}  // namespace fot

#endif  // FOTSERVE_MEMORY_MEMORY_OPTIONS_H_
