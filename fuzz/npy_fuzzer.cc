// Fuzzes the .npy reader (src/checkpoint/npy.h), which reads fot-run's
// --input-ids and the golden reference outputs.
//
// Input: the bytes of one .npy file.
//
// Checks: an array that reads holds exactly its shape's bytes, writes back
// (WriteNpy) to a file that reads as the same array, and the typed readers
// (token ids, float32) agree with it.
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz/fuzz_support.h"
#include "src/checkpoint/npy.h"

namespace fot::fuzz {
namespace {

void CheckArray(const NpyArray& array) {
  const int item = NpyItemSize(array.dtype);
  FOT_FUZZ_CHECK(item > 0, "ReadNpy returned unsupported dtype " + array.dtype);
  FOT_FUZZ_CHECK(array.bytes.size() == static_cast<size_t>(array.num_elements()) * item,
                 "data size does not match the shape");
}

void CheckRoundTrip(const NpyArray& array, const std::string& dir) {
  const std::string path = dir + "/again.npy";
  FOT_FUZZ_CHECK(WriteNpy(path, array).ok(), "WriteNpy refused an array ReadNpy returned");
  absl::StatusOr<NpyArray> again = ReadNpy(path);
  FOT_FUZZ_CHECK(again.ok(), "ReadNpy refused what WriteNpy wrote");
  FOT_FUZZ_CHECK(
      again->dtype == array.dtype && again->shape == array.shape && again->bytes == array.bytes,
      "WriteNpy/ReadNpy changed the array");
}

void CheckTypedReaders(const NpyArray& array, const std::string& path) {
  absl::StatusOr<std::vector<int32_t>> ids = ReadNpyTokenIds(path);
  if (ids.ok()) {
    FOT_FUZZ_CHECK(array.shape.size() == 1 && static_cast<int64_t>(ids->size()) == array.shape[0],
                   "token ids of another length than the array");
  }
  std::vector<int64_t> shape;
  absl::StatusOr<std::vector<float>> floats = ReadNpyFloat32(path, &shape);
  if (floats.ok()) {
    FOT_FUZZ_CHECK(shape == array.shape, "ReadNpyFloat32 returned another shape");
    FOT_FUZZ_CHECK(static_cast<int64_t>(floats->size()) == array.num_elements(),
                   "ReadNpyFloat32 returned another number of values");
  }
  const bool float_dtype = array.dtype == "<f4" || array.dtype == "<f8";
  FOT_FUZZ_CHECK(floats.ok() == float_dtype, "ReadNpyFloat32 disagrees with the dtype");
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot;
  const std::string dir = fuzz::FreshDir("npy");
  const std::string path = dir + "/input.npy";
  fuzz::WriteFileOrDie(path, fuzz::AsText(data, size));
  absl::StatusOr<NpyArray> array = ReadNpy(path);
  if (!array.ok()) return 0;
  fuzz::CheckArray(*array);
  fuzz::CheckRoundTrip(*array, dir);
  fuzz::CheckTypedReaders(*array, path);
  return 0;
}
