#include "memory/memory_options.h"

#include <faiss/utils/fp16.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "base/status_macros.h"

namespace fot {
namespace {

// Upper bounds that keep every derived size well inside int32/int64 and catch
// swapped or garbled arguments early; none of them limits a sensible store.
constexpr int kMaxHeadDim = 65536;
constexpr int kMaxHnswM = 256;
constexpr int kMaxEf = 1 << 16;
constexpr int kMaxNlist = 1 << 20;
constexpr int64_t kMaxTrainSize = int64_t{1} << 31;
// FAISS k-means wants >= 39 points per centroid (it warns on stderr below).
constexpr int64_t kMinPointsPerCentroid = 39;
constexpr int kPqCodebookSize = 256;  // 8-bit PQ codes

std::string Str(std::string_view s) { return std::string(s); }

absl::Status OutOfRange(std::string_view field, int64_t value, int64_t lo, int64_t hi,
                        std::string_view why = "") {
  std::string msg = "memory option " + Str(field) + "=" + std::to_string(value) +
                    " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!why.empty()) msg += ": " + Str(why);
  return absl::InvalidArgumentError(msg);
}

absl::Status CheckRange(std::string_view field, int64_t value, int64_t lo, int64_t hi,
                        std::string_view why = "") {
  if (value < lo || value > hi) return OutOfRange(field, value, lo, hi, why);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseInt(std::string_view key, std::string_view text) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError("index spec parameter '" + Str(key) +
                                      "' expects an integer, got '" + Str(text) + "'");
  }
  return value;
}

absl::StatusOr<int> ParseInt32(std::string_view key, std::string_view text) {
  absl::StatusOr<int64_t> v = ParseInt(key, text);
  if (!v.ok()) return v.status();
  if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError("index spec parameter '" + Str(key) + "' value " + Str(text) +
                                      " does not fit in 32 bits");
  }
  return static_cast<int>(*v);
}

// "0.05", not "0.050000".
std::string ShortDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

int IvfListsFor(int64_t keys) {
  const double cap = static_cast<double>(std::max<int64_t>(keys, 1)) / kIvfKeysPerList;
  int lists = 1;
  while (lists * 2.0 <= cap && lists * 2 <= kMaxNlist) lists *= 2;
  return lists;
}

int64_t IvfScanBudget(const MemoryOptions& o, int64_t keys, int64_t nq) {
  const double scan = nq <= kIvfDecodeQueries ? o.ivf_decode_scan : o.ivf_max_scan;
  const auto share = static_cast<int64_t>(std::ceil(scan * static_cast<double>(keys)));
  return std::max(share, kIvfMinScanKeys);
}

absl::Status ValidateMemoryOptions(const MemoryOptions& o, int head_dim) {
  if (head_dim < 1 || head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError("head_dim=" + std::to_string(head_dim) +
                                      " is out of range [1, " + std::to_string(kMaxHeadDim) + "]");
  }
  switch (o.dtype) {
    case StorageType::kFloat32:
    case StorageType::kFloat16:
    case StorageType::kBFloat16:
      break;
    default:
      return absl::InvalidArgumentError("memory option dtype has an unknown value " +
                                        std::to_string(static_cast<int>(o.dtype)));
  }
  switch (o.index_kind) {
    case IndexKind::kFlat:
      return absl::OkStatus();
    case IndexKind::kHnsw:
      FOT_RETURN_IF_ERROR(CheckRange("hnsw_m", o.hnsw_m, 2, kMaxHnswM));
      FOT_RETURN_IF_ERROR(CheckRange("hnsw_ef_construction", o.hnsw_ef_construction, 1, kMaxEf));
      return CheckRange("hnsw_ef_search", o.hnsw_ef_search, 1, kMaxEf);
    case IndexKind::kIvf: {
      FOT_RETURN_IF_ERROR(CheckRange("ivf_nlist", o.ivf_nlist, 0, kMaxNlist,
                                     "0 lets the number of lists grow with the memory"));
      FOT_RETURN_IF_ERROR(
          CheckRange("ivf_nprobe", o.ivf_nprobe, 0, o.ivf_nlist > 0 ? o.ivf_nlist : kMaxNlist,
                     "nprobe caps the probed lists, at most ivf_nlist; 0 (auto) leaves "
                     "it to ivf_max_scan"));
      for (const auto& [name, share] : {std::pair{"ivf_max_scan", o.ivf_max_scan},
                                        std::pair{"ivf_decode_scan", o.ivf_decode_scan}}) {
        if (!(share > 0.0 && share <= 1.0)) {
          return absl::InvalidArgumentError(
              "memory option " + std::string(name) + "=" + std::to_string(share) +
              " is out of range (0, 1]: the share of keys a query may scan");
        }
      }
      if (o.ivf_pq && o.ivf_pq_m != 0) {
        FOT_RETURN_IF_ERROR(
            CheckRange("ivf_pq_m", o.ivf_pq_m, 1, head_dim + 2,
                       "PQ splits head_dim + 2 dimensions into ivf_pq_m parts; 0 picks "
                       "one part per 4 dimensions"));
      }
      if (!o.ivf_pq && o.ivf_pq_m != 0) {
        return absl::InvalidArgumentError("memory option ivf_pq_m=" + std::to_string(o.ivf_pq_m) +
                                          " needs ivf_pq=true (or spec key pq=1)");
      }
      if (o.ivf_train_size != 0) {
        int64_t centroids = o.ivf_nlist > 0 ? o.ivf_nlist : IvfListsFor(o.ivf_train_size);
        if (o.ivf_pq) centroids = std::max<int64_t>(centroids, kPqCodebookSize);
        const int64_t lo = kMinPointsPerCentroid * centroids;
        FOT_RETURN_IF_ERROR(
            CheckRange("ivf_train_size", o.ivf_train_size, lo, kMaxTrainSize,
                       "k-means needs at least 39 keys per centroid (ivf_nlist lists, "
                       "and 256 PQ codes per sub-quantizer with PQ); 0 picks 40 per "
                       "centroid"));
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("memory option index_kind has an unknown value " +
                                    std::to_string(static_cast<int>(o.index_kind)));
}

MemoryOptions ResolveMemoryOptions(const MemoryOptions& options, int head_dim) {
  MemoryOptions o = options;
  if (o.index_kind == IndexKind::kIvf) {
    // PQ codes cannot be decoded exactly, so a PQ index is never retrained.
    if (o.ivf_pq && o.ivf_nlist == 0) o.ivf_nlist = kPqCodebookSize;
    if (o.ivf_train_size == 0 && o.ivf_nlist == 0) o.ivf_train_size = kIvfAutoTrainSize;
    if (o.ivf_train_size == 0) {
      int64_t centroids = o.ivf_nlist;
      if (o.ivf_pq) centroids = std::max<int64_t>(centroids, kPqCodebookSize);
      o.ivf_train_size = 40 * centroids;
    }
    if (o.ivf_pq && o.ivf_pq_m == 0) o.ivf_pq_m = (head_dim + 2 + 3) / 4;
  }
  return o;
}

absl::StatusOr<IndexKind> ParseIndexKind(std::string_view name) {
  if (name == "flat" || name == "exact") return IndexKind::kFlat;
  if (name == "hnsw") return IndexKind::kHnsw;
  if (name == "ivf") return IndexKind::kIvf;
  return absl::InvalidArgumentError("unknown index kind '" + Str(name) +
                                    "'; expected flat (or exact), hnsw or ivf");
}

std::string_view IndexKindName(IndexKind kind) {
  switch (kind) {
    case IndexKind::kFlat:
      return "flat";
    case IndexKind::kHnsw:
      return "hnsw";
    case IndexKind::kIvf:
      return "ivf";
  }
  return "unknown";
}

absl::StatusOr<StorageType> ParseStorageType(std::string_view name) {
  if (name == "f32" || name == "float32") return StorageType::kFloat32;
  if (name == "f16" || name == "float16") return StorageType::kFloat16;
  if (name == "bf16" || name == "bfloat16") return StorageType::kBFloat16;
  return absl::InvalidArgumentError("unknown storage type '" + Str(name) +
                                    "'; expected f32, f16 or bf16");
}

std::string_view StorageTypeName(StorageType type) {
  switch (type) {
    case StorageType::kFloat32:
      return "f32";
    case StorageType::kFloat16:
      return "f16";
    case StorageType::kBFloat16:
      return "bf16";
  }
  return "unknown";
}

absl::Status ParseIndexSpec(std::string_view spec, MemoryOptions* options) {
  if (options == nullptr) return absl::InvalidArgumentError("ParseIndexSpec: options is null");
  const size_t colon = spec.find(':');
  const std::string_view kind_name = spec.substr(0, colon);
  absl::StatusOr<IndexKind> kind = ParseIndexKind(kind_name);
  if (!kind.ok()) {
    return absl::InvalidArgumentError("index spec '" + Str(spec) +
                                      "': " + std::string(kind.status().message()));
  }
  MemoryOptions o = *options;
  o.index_kind = *kind;
  if (colon == std::string_view::npos) {
    *options = o;
    return absl::OkStatus();
  }
  std::string_view rest = spec.substr(colon + 1);
  std::set<std::string, std::less<>> seen;
  int explicit_pq = -1;  // value of a "pq=" key, -1 when absent
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError("index spec '" + Str(spec) + "': " + why);
  };
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (item.empty() || eq == std::string_view::npos || eq == 0) {
      return bad("expected key=value, got '" + Str(item) + "'");
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (!seen.insert(Str(key)).second) return bad("parameter '" + Str(key) + "' given twice");
    absl::Status status;
    auto set_int = [&](int* field) {
      absl::StatusOr<int> v = ParseInt32(key, value);
      if (v.ok()) *field = *v;
      return v.status();
    };
    if (key == "dtype") {
      absl::StatusOr<StorageType> t = ParseStorageType(value);
      if (t.ok()) o.dtype = *t;
      status = t.status();
    } else if (o.index_kind == IndexKind::kHnsw && key == "m") {
      status = set_int(&o.hnsw_m);
    } else if (o.index_kind == IndexKind::kHnsw && key == "ef_construction") {
      status = set_int(&o.hnsw_ef_construction);
    } else if (o.index_kind == IndexKind::kHnsw && key == "ef_search") {
      status = set_int(&o.hnsw_ef_search);
    } else if (o.index_kind == IndexKind::kIvf && key == "nlist") {
      if (value == "auto") {
        o.ivf_nlist = 0;
      } else {
        status = set_int(&o.ivf_nlist);
      }
    } else if (o.index_kind == IndexKind::kIvf && key == "nprobe") {
      if (value == "auto") {
        o.ivf_nprobe = 0;
      } else {
        status = set_int(&o.ivf_nprobe);
      }
    } else if (o.index_kind == IndexKind::kIvf && (key == "max_scan" || key == "decode_scan")) {
      double v = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec == std::errc() && end == value.data() + value.size() && std::isfinite(v)) {
        (key == "max_scan" ? o.ivf_max_scan : o.ivf_decode_scan) = v;
      } else {
        status = absl::InvalidArgumentError("index spec parameter '" + Str(key) + "' value " +
                                            Str(value) + " is not a number");
      }
    } else if (o.index_kind == IndexKind::kIvf && key == "train_size") {
      absl::StatusOr<int64_t> v = ParseInt(key, value);
      if (v.ok()) o.ivf_train_size = *v;
      status = v.status();
    } else if (o.index_kind == IndexKind::kIvf && key == "pq") {
      if (value != "0" && value != "1") return bad("parameter 'pq' expects 0 or 1");
      explicit_pq = value == "1" ? 1 : 0;
      o.ivf_pq = explicit_pq == 1;
    } else if (o.index_kind == IndexKind::kIvf && key == "pq_m") {
      status = set_int(&o.ivf_pq_m);
      if (status.ok() && o.ivf_pq_m > 0) o.ivf_pq = explicit_pq != 0;
    } else {
      std::string expected = "dtype";
      if (o.index_kind == IndexKind::kHnsw) expected += ", m, ef_construction, ef_search";
      if (o.index_kind == IndexKind::kIvf) {
        expected += ", nlist, nprobe, max_scan, decode_scan, train_size, pq, pq_m";
      }
      return bad("unknown parameter '" + Str(key) + "' for index kind " +
                 Str(IndexKindName(o.index_kind)) + "; expected one of " + expected);
    }
    if (!status.ok()) return bad(std::string(status.message()));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  // A budget given for queries is every query's unless tokens get their own.
  if (seen.count("max_scan") && !seen.count("decode_scan")) o.ivf_decode_scan = o.ivf_max_scan;
  if (seen.count("nlist") && !seen.count("nprobe") && o.ivf_nlist > 0 && o.ivf_nprobe > 0) {
    o.ivf_nprobe = std::min(o.ivf_nprobe, o.ivf_nlist);  // "ivf:nlist=16" just works
  }
  if (explicit_pq == 0) {
    if (seen.count("pq_m") && o.ivf_pq_m > 0) {
      return bad("pq=0 contradicts pq_m=" + std::to_string(o.ivf_pq_m));
    }
    o.ivf_pq_m = 0;
  }
  *options = o;
  return absl::OkStatus();
}

std::string DescribeOptions(const MemoryOptions& o) {
  std::string s(IndexKindName(o.index_kind));
  s += ":";
  switch (o.index_kind) {
    case IndexKind::kFlat:
      break;
    case IndexKind::kHnsw:
      s += "m=" + std::to_string(o.hnsw_m) +
           ",ef_construction=" + std::to_string(o.hnsw_ef_construction) +
           ",ef_search=" + std::to_string(o.hnsw_ef_search) + ",";
      break;
    case IndexKind::kIvf:
      s += "nlist=" + (o.ivf_nlist > 0 ? std::to_string(o.ivf_nlist) : "auto") +
           ",nprobe=" + (o.ivf_nprobe > 0 ? std::to_string(o.ivf_nprobe) : "auto") +
           ",max_scan=" + ShortDouble(o.ivf_max_scan) +
           ",decode_scan=" + ShortDouble(o.ivf_decode_scan) +
           ",train_size=" + std::to_string(o.ivf_train_size) + ",pq=" + (o.ivf_pq ? "1" : "0") +
           ",";
      if (o.ivf_pq) s += "pq_m=" + std::to_string(o.ivf_pq_m) + ",";
      break;
  }
  s += "dtype=" + Str(StorageTypeName(o.dtype));
  return s;
}

int BytesPerScalar(StorageType type) { return type == StorageType::kFloat32 ? 4 : 2; }

float MaxFinite(StorageType type) {
  return type == StorageType::kFloat16 ? 65504.0f : std::numeric_limits<float>::max();
}

void EncodeHalfRow(StorageType type, const float* in, int64_t n, uint16_t* out) {
  if (type == StorageType::kBFloat16) {
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToBFloat16(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = faiss::encode_fp16(in[i]);
  }
}

void DecodeHalfRow(StorageType type, const uint16_t* in, int64_t n, float* out) {
  if (type == StorageType::kBFloat16) {
    for (int64_t i = 0; i < n; ++i) out[i] = BFloat16ToFloat(in[i]);
  } else {
    HalfToFloatRow(in, n, out);
  }
}

}  // namespace fot
