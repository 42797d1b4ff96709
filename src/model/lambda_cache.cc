#include "src/model/lambda_cache.h"

#include <cstring>
#include <istream>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"

namespace fot {
namespace {

constexpr char kMagic[] = "fotserve-lambda-cache 1\n";

template <typename T>
void WriteArray(std::ostream& out, const std::vector<T>& values) {
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(T)));
}

template <typename T>
bool ReadArray(std::istream& in, std::vector<T>* values) {
  in.read(reinterpret_cast<char*>(values->data()),
          static_cast<std::streamsize>(values->size() * sizeof(T)));
  return static_cast<bool>(in);
}

}  // namespace

LambdaCache::LambdaCache(int num_kv_heads, int head_dim, int n_global, int local_window,
                         bool keeps_raw_keys)
    : row_(num_kv_heads * head_dim),
      n_global_(n_global),
      local_window_(local_window),
      keeps_raw_keys_(keeps_raw_keys),
      sink_keys_(static_cast<size_t>(n_global) * row_),
      sink_values_(sink_keys_.size()),
      ring_keys_(static_cast<size_t>(local_window) * row_),
      ring_raw_keys_(keeps_raw_keys ? ring_keys_.size() : 0),
      ring_values_(ring_keys_.size()),
      ring_provenance_(local_window) {}

void LambdaCache::Push(const float* raw_keys, const float* rotated, const float* values,
                       const Provenance* provenance, int n) {
  const size_t bytes = row_ * sizeof(float);
  for (int r = 0; r < n; ++r) {
    const int64_t position = tokens_ + r;
    const size_t in = static_cast<size_t>(r) * row_;
    if (position < n_global_) {  // a sink: kept unrotated for the whole stream
      std::memcpy(&sink_keys_[position * row_], raw_keys + in, bytes);
      std::memcpy(&sink_values_[position * row_], values + in, bytes);
    }
    const int slot = Slot(position);
    std::memcpy(&ring_keys_[Offset(slot)], rotated + in, bytes);
    if (keeps_raw_keys_) std::memcpy(&ring_raw_keys_[Offset(slot)], raw_keys + in, bytes);
    std::memcpy(&ring_values_[Offset(slot)], values + in, bytes);
    ring_provenance_[slot] = provenance[r];
  }
  tokens_ += n;
}

absl::Status LambdaCache::Write(std::ostream& out) const {
  const int64_t header[] = {row_, n_global_, local_window_, keeps_raw_keys_ ? 1 : 0, tokens_};
  out.write(kMagic, sizeof(kMagic) - 1);
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  WriteArray(out, sink_keys_);
  WriteArray(out, sink_values_);
  WriteArray(out, ring_keys_);
  WriteArray(out, ring_raw_keys_);
  WriteArray(out, ring_values_);
  WriteArray(out, ring_provenance_);
  if (!out) return absl::InternalError("cannot write a lambda cache");
  return absl::OkStatus();
}

absl::Status LambdaCache::Read(std::istream& in) {
  std::string magic(sizeof(kMagic) - 1, '\0');
  int64_t header[5] = {};
  in.read(magic.data(), static_cast<std::streamsize>(magic.size()));
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  if (!in || magic != kMagic) return absl::DataLossError("not a saved lambda cache");
  const int64_t expected[] = {row_, n_global_, local_window_, keeps_raw_keys_ ? 1 : 0};
  if (!std::equal(expected, expected + 4, header)) {
    return absl::DataLossError(absl::StrCat("the saved lambda cache has another shape (row ",
                                            header[0], ", n_global ", header[1], ", L ", header[2],
                                            ", raw keys ", header[3], ") than this stream's (row ",
                                            row_, ", n_global ", n_global_, ", L ", local_window_,
                                            ", raw keys ", keeps_raw_keys_ ? 1 : 0, ")"));
  }
  if (header[4] < 0) return absl::DataLossError("the saved lambda cache has a negative position");
  LambdaCache read = *this;
  read.tokens_ = header[4];
  if (!ReadArray(in, &read.sink_keys_) || !ReadArray(in, &read.sink_values_) ||
      !ReadArray(in, &read.ring_keys_) || !ReadArray(in, &read.ring_raw_keys_) ||
      !ReadArray(in, &read.ring_values_) || !ReadArray(in, &read.ring_provenance_)) {
    return absl::DataLossError("the saved lambda cache is truncated");
  }
  if (in.peek() != std::char_traits<char>::eof()) {
    return absl::DataLossError("the saved lambda cache has trailing bytes");
  }
  *this = std::move(read);
  return absl::OkStatus();
}

}  // namespace fot
