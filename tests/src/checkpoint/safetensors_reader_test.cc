#include "src/checkpoint/safetensors_reader.h"

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "src/checkpoint/safetensors_writer.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

// A fresh, empty folder for the running test.
std::string FreshDir() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(info->test_suite_name()) + "_" + info->name();
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  fs::path dir =
      fs::path(::testing::TempDir()) / ("fot_st_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A safetensors file by hand: 8-byte little-endian length, header, data.
std::string RawSafetensors(const std::string& header, size_t data_bytes) {
  std::string file(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>(n >> (8 * i));
  return file + header + std::string(data_bytes, '\x01');
}

TensorToWrite FloatTensor(const std::string& name, std::vector<int64_t> shape,
                          const std::vector<float>& values, DType dtype) {
  return {name, dtype, std::move(shape), EncodeFloats(values.data(), values.size(), dtype)};
}

std::vector<float> Decoded(const TensorInfo& info) {
  std::vector<float> out(static_cast<size_t>(info.num_elements()));
  DecodeToFloats(info.data, out.size(), info.dtype, out.data());
  return out;
}

class RoundTripTest : public ::testing::TestWithParam<DType> {};

TEST_P(RoundTripTest, WrittenTensorsReadBackExactly) {
  const DType dtype = GetParam();
  const std::string path = FreshDir() + "/model.safetensors";
  // Values exactly representable in every dtype, so the round trip is exact.
  const std::vector<float> a = {0.0f, 1.0f, -2.0f, 0.5f, 3.25f, -0.125f};
  const std::vector<float> b = {1024.0f, -1.5f};
  ASSERT_TRUE(WriteSafetensors(path, {FloatTensor("a", {2, 3}, a, dtype),
                                      FloatTensor("b.weight", {2}, b, dtype)})
                  .ok());
  auto checkpoint = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->TensorNames(), std::vector<std::string>({"a", "b.weight"}));
  EXPECT_EQ((*checkpoint)->metadata().at("format"), "pt");
  auto info = (*checkpoint)->Find("a");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ((*info)->dtype, dtype);
  EXPECT_EQ((*info)->shape, std::vector<int64_t>({2, 3}));
  EXPECT_EQ((*info)->num_bytes, 6 * DTypeSize(dtype));
  EXPECT_EQ((*info)->file, path);
  EXPECT_EQ(Decoded(**info), a);
  EXPECT_EQ(Decoded(**(*checkpoint)->Find("b.weight")), b);
}

INSTANTIATE_TEST_SUITE_P(AllDTypes, RoundTripTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(DTypeName(info.param));
                         });

TEST(SafetensorsWriterTest, HeaderIsPaddedToEightBytesAndDataIsAligned) {
  const std::string path = FreshDir() + "/x.safetensors";
  ASSERT_TRUE(
      WriteSafetensors(path, {FloatTensor("odd_name_x", {3}, {1, 2, 3}, DType::kF32)}).ok());
  const std::string bytes = ReadBytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 12);
  auto checkpoint = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*checkpoint)->Find("odd_name_x").value()->data) % 4, 0u);
}

TEST(SafetensorsWriterTest, AFailingDiskAtAnyWriteKeepsThePreviousFile) {
  const std::string path = FreshDir() + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {FloatTensor("w", {1}, {7}, DType::kF32)}).ok());
  const int operations = ForEachFailurePoint(
      [&](Env& env) {
        return WriteSafetensors(path, {FloatTensor("w", {2}, {8, 9}, DType::kF32)},
                                {{"format", "pt"}}, &env);
      },
      [&](const absl::Status& status, int fail_at) {
        auto checkpoint = SafetensorsCheckpoint::OpenFile(path);
        ASSERT_TRUE(checkpoint.ok()) << "failing at " << fail_at << ": " << checkpoint.status();
        const std::vector<float> w = Decoded(**(*checkpoint)->Find("w"));
        if (status.ok()) {
          EXPECT_EQ(w, std::vector<float>({8, 9}));
        } else {
          EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
          EXPECT_TRUE(w == std::vector<float>({7}) || w == std::vector<float>({8, 9}));
        }
      });
  EXPECT_GE(operations, 5);  // create, three appends, fsync, rename, directory fsync
}

TEST(SafetensorsWriterTest, RejectsByteCountThatDoesNotMatchShape) {
  const std::string path = FreshDir() + "/x.safetensors";
  absl::Status status = WriteSafetensors(path, {{"t", DType::kF32, {2, 2}, {0, 0, 0, 0}}});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("'t' has 4 bytes"), std::string::npos) << status;
  EXPECT_FALSE(fs::exists(path));
}

TEST(SafetensorsWriterTest, RejectsDuplicateNames) {
  const std::string path = FreshDir() + "/x.safetensors";
  absl::Status status = WriteSafetensors(
      path, {FloatTensor("t", {1}, {1}, DType::kF32), FloatTensor("t", {1}, {2}, DType::kF32)});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("'t' is given twice"), std::string::npos) << status;
}

TEST(SafetensorsFileWriterTest, PiecesMakeTheFileWriteSafetensorsMakes) {
  const std::string dir = FreshDir();
  const std::vector<TensorToWrite> tensors = {
      FloatTensor("a", {2, 3}, {1, 2, 3, 4, 5, 6}, DType::kF32),
      FloatTensor("b", {3}, {7, 8, 9}, DType::kBF16)};
  ASSERT_TRUE(WriteSafetensors(dir + "/whole.safetensors", tensors).ok());
  auto writer = SafetensorsFileWriter::Create(
      dir + "/pieces.safetensors", {{"a", DType::kF32, {2, 3}}, {"b", DType::kBF16, {3}}});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::string data(tensors[0].bytes.begin(), tensors[0].bytes.end());
  data.append(tensors[1].bytes.begin(), tensors[1].bytes.end());
  // Cuts anywhere, across the tensors' boundary too.
  const std::vector<size_t> cuts = {0, 5, 23, 26, data.size()};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    ASSERT_TRUE(
        (*writer)->Append(std::string_view(data).substr(cuts[i], cuts[i + 1] - cuts[i])).ok());
  }
  EXPECT_FALSE(fs::exists(dir + "/pieces.safetensors"));  // only the .tmp until Finish
  ASSERT_TRUE((*writer)->Finish().ok());
  EXPECT_EQ(ReadBytes(dir + "/pieces.safetensors"), ReadBytes(dir + "/whole.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/pieces.safetensors.tmp"));
}

TEST(SafetensorsFileWriterTest, WrongByteCountsFailAndLeaveNoFile) {
  const std::string dir = FreshDir();
  const std::string path = dir + "/x.safetensors";
  {
    auto writer = SafetensorsFileWriter::Create(path, {{"a", DType::kF32, {2}}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    const absl::Status status = (*writer)->Append(std::string(12, '\0'));
    EXPECT_NE(status.message().find("12 bytes of tensor data, but the header has 8"),
              std::string::npos)
        << status;
  }
  {
    auto writer = SafetensorsFileWriter::Create(path, {{"a", DType::kF32, {2}}});
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append(std::string(4, '\0')).ok());
    const absl::Status status = (*writer)->Finish();
    EXPECT_NE(status.message().find("4 bytes of tensor data, but the header has 8"),
              std::string::npos)
        << status;
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto duplicate =
      SafetensorsFileWriter::Create(path, {{"a", DType::kF32, {1}}, {"a", DType::kF32, {1}}});
  EXPECT_NE(duplicate.status().message().find("'a' is given twice"), std::string::npos)
      << duplicate.status();
}

TEST(FloatConversionTest, HalfRoundsToNearestEven) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.5f, -11)), 0x3c01);      // above the tie
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);  // rounds past the largest half: infinity
  EXPECT_EQ(FloatToHalf(-1e10f), 0xfc00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (zero)
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0f, -25)), 0x0002);  // tie -> even (two)
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(FloatToHalf(1e-10f), 0x0000);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::nanf("")))));
}

TEST(FloatConversionTest, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = HalfToFloat(static_cast<uint16_t>(bits));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), bits) << "half bits " << bits;
  }
}

TEST(FloatConversionTest, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBFloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even (down)
  EXPECT_EQ(FloatToBFloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(FloatToBFloat16(-3.0f), 0xc040);
  EXPECT_EQ(BFloat16ToFloat(0x3f81), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
  EXPECT_TRUE(std::isinf(BFloat16ToFloat(FloatToBFloat16(3.4e38f * 1.0001f))));
}

TEST(SafetensorsCheckpointTest, OpenFindsSingleFileInFolder) {
  const std::string dir = FreshDir();
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", {FloatTensor("w", {1}, {7}, DType::kF32)}).ok());
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE((*checkpoint)->Contains("w"));
  EXPECT_FALSE((*checkpoint)->Contains("v"));
  EXPECT_EQ((*checkpoint)->source(), dir + "/model.safetensors");
}

TEST(SafetensorsCheckpointTest, FindOfMissingTensorNamesTensorAndFile) {
  const std::string dir = FreshDir();
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", {FloatTensor("w", {1}, {7}, DType::kF32)}).ok());
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto missing = (*checkpoint)->Find("lm_head.weight");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'lm_head.weight'"), std::string::npos);
  EXPECT_NE(missing.status().message().find(dir + "/model.safetensors"), std::string::npos);
}

TEST(SafetensorsCheckpointTest, EmptyTensorIsAllowed) {
  const std::string dir = FreshDir();
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model.safetensors", {FloatTensor("empty", {0, 4}, {}, DType::kF32),
                                                    FloatTensor("w", {1}, {7}, DType::kF32)})
          .ok());
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->Find("empty").value()->num_bytes, 0u);
}

TEST(SafetensorsCheckpointTest, ShardedCheckpointServesTensorsFromEachShard) {
  const std::string dir = FreshDir();
  ASSERT_TRUE(
      WriteSafetensors(dir + "/a.safetensors", {FloatTensor("x", {2}, {1, 2}, DType::kF32),
                                                FloatTensor("unlisted", {1}, {0}, DType::kF32)})
          .ok());
  ASSERT_TRUE(
      WriteSafetensors(dir + "/b.safetensors", {FloatTensor("y", {1}, {3}, DType::kBF16)}).ok());
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"metadata": {"total_size": 10},
                 "weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->TensorNames(), std::vector<std::string>({"x", "y"}));
  EXPECT_EQ(Decoded(**(*checkpoint)->Find("x")), std::vector<float>({1, 2}));
  EXPECT_EQ(Decoded(**(*checkpoint)->Find("y")), std::vector<float>({3}));
  EXPECT_EQ((*checkpoint)->Find("y").value()->file, dir + "/b.safetensors");
}

TEST(SafetensorsCheckpointTest, FolderWithoutWeightsIsNotFound) {
  const std::string dir = FreshDir();
  auto checkpoint = SafetensorsCheckpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(checkpoint.status().message().find("neither model.safetensors nor"), std::string::npos)
      << checkpoint.status();
}

TEST(SafetensorsCheckpointTest, MissingFolderIsNotFound) {
  auto checkpoint = SafetensorsCheckpoint::Open(FreshDir() + "/no_such_model");
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(checkpoint.status().message().find("no_such_model: not a directory"), std::string::npos)
      << checkpoint.status();
}

// One malformed single file: its bytes and what the message must say.
struct BadFileCase {
  const char* name;
  std::string bytes;
  const char* expected;
};

std::vector<BadFileCase> BadFiles() {
  const std::string ok_entry = R"("t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  return {
      {"TooShort", std::string("\x05\x00\x00", 3), "file is 3 bytes, too short"},
      {"EmptyFile", "", "file is 0 bytes, too short"},
      // A header that claims 1000 bytes in a 20-byte file.
      {"HeaderLengthBeyondFile",
       std::string("\xe8\x03\x00\x00\x00\x00\x00\x00", 8) + "{}" + std::string(10, ' '),
       "header length 1000 bytes runs past the end of the file (20 bytes)"},
      {"HeaderNotJson", RawSafetensors("{\"t\": ", 8), "header is not valid JSON"},
      {"HeaderNotObject", RawSafetensors("[1, 2]", 8), "header is not a JSON object"},
      {"EntryNotObject", RawSafetensors(R"({"t": [1]})", 8), "tensor 't': entry is not a JSON"},
      {"MissingDtype", RawSafetensors(R"({"t": {"shape": [2], "data_offsets": [0, 8]}})", 8),
       "tensor 't': missing 'dtype'"},
      {"MissingShape", RawSafetensors(R"({"t": {"dtype": "F32", "data_offsets": [0, 8]}})", 8),
       "tensor 't': missing 'shape'"},
      {"MissingDataOffsets", RawSafetensors(R"({"t": {"dtype": "F32", "shape": [2]}})", 8),
       "tensor 't': missing 'data_offsets'"},
      {"UnsupportedDtype",
       RawSafetensors(R"({"t": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8),
       "tensor 't': unsupported dtype 'I64'"},
      {"NegativeDimension",
       RawSafetensors(R"({"t": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8),
       "tensor 't': shape must hold non-negative integers"},
      {"OffsetsNotAPair",
       RawSafetensors(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8),
       "tensor 't': data_offsets must be two non-negative integers"},
      {"OffsetsOutOfBounds",
       RawSafetensors(R"({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8),
       "tensor 't': data_offsets [0, 16] run past the end of the data (8 bytes"},
      {"BeginAfterEnd",
       RawSafetensors(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8),
       "tensor 't': data_offsets [8, 0] have begin > end"},
      {"SizeDoesNotMatchShape",
       RawSafetensors(R"({"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8),
       "tensor 't': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12"},
      {"ShapeProductOverflows",
       RawSafetensors(
           R"({"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
           8),
       "needs more than 2^64"},
      {"OverlappingTensors",
       RawSafetensors(
           "{" + ok_entry + R"(, "u": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]}})", 8),
       "tensors 't' [0, 8) and 'u' [4, 8) overlap"},
      {"MetadataNotStrings", RawSafetensors(R"({"__metadata__": {"format": 1}})", 0),
       "__metadata__ value for 'format' is not a string"},
  };
}

class MalformedFileTest : public ::testing::TestWithParam<BadFileCase> {};

TEST_P(MalformedFileTest, IsRejectedNamingFileAndProblem) {
  const BadFileCase& c = GetParam();
  const std::string path = FreshDir() + "/model.safetensors";
  WriteBytes(path, c.bytes);
  auto checkpoint = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_FALSE(checkpoint.ok()) << c.name << " was accepted";
  const std::string message(checkpoint.status().message());
  EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;
  EXPECT_NE(message.find(c.expected), std::string::npos)
      << "message: " << message << "\nexpected to contain: " << c.expected;
}

INSTANTIATE_TEST_SUITE_P(Cases, MalformedFileTest, ::testing::ValuesIn(BadFiles()),
                         [](const ::testing::TestParamInfo<BadFileCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(SafetensorsMalformedTest, MissingFileIsNotFound) {
  const std::string path = FreshDir() + "/absent.safetensors";
  auto checkpoint = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(checkpoint.status().message().find(path + ": cannot open"), std::string::npos)
      << checkpoint.status();
}

// A sharded folder with one good shard, a.safetensors holding "x", and `index`.
absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenWithIndex(const std::string& dir,
                                                                     const std::string& index) {
  EXPECT_TRUE(
      WriteSafetensors(dir + "/a.safetensors", {FloatTensor("x", {1}, {1}, DType::kF32)}).ok());
  WriteBytes(dir + "/model.safetensors.index.json", index);
  return SafetensorsCheckpoint::Open(dir);
}

void ExpectIndexError(const std::string& index, const std::string& expected) {
  const std::string dir = FreshDir();
  auto checkpoint = OpenWithIndex(dir, index);
  ASSERT_FALSE(checkpoint.ok()) << "accepted index: " << index;
  const std::string message(checkpoint.status().message());
  EXPECT_EQ(message.rfind(dir + "/model.safetensors.index.json: ", 0), 0u) << message;
  EXPECT_NE(message.find(expected), std::string::npos)
      << "message: " << message << "\nexpected to contain: " << expected;
}

TEST(SafetensorsMalformedTest, IndexThatIsNotJsonIsRejected) {
  ExpectIndexError(R"({"weight_map": )", "not valid JSON");
}

TEST(SafetensorsMalformedTest, IndexWithoutWeightMapIsRejected) {
  ExpectIndexError(R"({"metadata": {}})", "missing \"weight_map\" object");
}

TEST(SafetensorsMalformedTest, IndexNamingMissingShardIsRejected) {
  ExpectIndexError(R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})",
                   "shard 'b.safetensors' (holding 'y')");
}

TEST(SafetensorsMalformedTest, IndexNamingTensorMissingFromItsShardIsRejected) {
  ExpectIndexError(R"({"weight_map": {"x": "a.safetensors", "z": "a.safetensors"}})",
                   "puts tensor 'z' in shard 'a.safetensors', which does not contain it");
}

TEST(SafetensorsMalformedTest, IndexShardOutsideFolderIsRejected) {
  ExpectIndexError(R"({"weight_map": {"x": "../a.safetensors"}})",
                   "which is not a file name in the model folder");
}

TEST(SafetensorsMalformedTest, MalformedShardIsRejectedNamingTheShard) {
  const std::string dir = FreshDir();
  WriteBytes(dir + "/b.safetensors", "\x01\x02");
  auto checkpoint =
      OpenWithIndex(dir, R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_NE(checkpoint.status().message().find(dir + "/b.safetensors: file is 2 bytes"),
            std::string::npos)
      << checkpoint.status();
}

}  // namespace
}  // namespace fot
