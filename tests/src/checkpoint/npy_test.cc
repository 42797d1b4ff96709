#include "src/checkpoint/npy.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "gtest/gtest.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/npy_test_" + name; }

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A .npy file with the given header dict (padded as numpy does) and raw data.
std::string MakeNpy(const std::string& dict, const std::string& data, int major = 1) {
  const size_t preamble = major == 1 ? 10 : 12;
  const size_t total = (preamble + dict.size() + 1 + 63) / 64 * 64;
  const size_t header_len = total - preamble;
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  for (size_t i = 0; i < preamble - 8; ++i) out.push_back(static_cast<char>(header_len >> (8 * i)));
  out += dict;
  out.append(header_len - dict.size() - 1, ' ');
  out.push_back('\n');
  return out + data;
}

template <typename T>
std::string RawBytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::string Dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

// Expects `status` to fail with `code`, mention the file and contain `needle`.
void ExpectError(const absl::Status& status, absl::StatusCode code, const std::string& path,
                 const std::string& needle) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_NE(status.message().find(needle), std::string::npos)
      << "expected '" << needle << "' in: " << status;
}

// --- golden files --------------------------------------------------------------

TEST(NpyTest, ReadsGoldenTokenIds) {
  auto ids = ReadNpyTokenIds(std::string(FOT_GOLDEN_DIR) + "/tiny/input_ids.npy");
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), 200u);
  for (int32_t id : *ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 512);  // the tiny model's vocabulary
  }
}

TEST(NpyTest, ReadsGoldenLogits) {
  for (const char* name : {"logits_nocache", "logits_cache", "logits_nomem"}) {
    std::vector<int64_t> shape;
    auto logits = ReadNpyFloat32(std::string(FOT_GOLDEN_DIR) + "/tiny/" + name + ".npy", &shape);
    ASSERT_TRUE(logits.ok()) << logits.status();
    EXPECT_EQ(shape, (std::vector<int64_t>{200, 512})) << name;
    ASSERT_EQ(logits->size(), 200u * 512u);
    float max_abs = 0;
    for (float v : *logits) {
      ASSERT_TRUE(std::isfinite(v));
      max_abs = std::max(max_abs, std::fabs(v));
    }
    EXPECT_GT(max_abs, 0.0f) << name;
  }
}

TEST(NpyTest, RewritingGoldenLogitsGivesIdenticalBytes) {
  // Our header layout matches numpy's byte for byte.
  const std::string golden = std::string(FOT_GOLDEN_DIR) + "/tiny/logits_nocache.npy";
  std::vector<int64_t> shape;
  auto logits = ReadNpyFloat32(golden, &shape);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::string copy = TempPath("golden_copy.npy");
  ASSERT_TRUE(WriteNpyFloat32(copy, shape, logits->data()).ok());
  EXPECT_EQ(ReadFileBytes(copy), ReadFileBytes(golden));

  auto ids = ReadNpyTokenIds(std::string(FOT_GOLDEN_DIR) + "/tiny/input_ids.npy");
  ASSERT_TRUE(ids.ok()) << ids.status();
  const std::string ids_copy = TempPath("golden_ids_copy.npy");
  ASSERT_TRUE(WriteNpyInt64(ids_copy, std::vector<int64_t>(ids->begin(), ids->end())).ok());
  EXPECT_EQ(ReadFileBytes(ids_copy),
            ReadFileBytes(std::string(FOT_GOLDEN_DIR) + "/tiny/input_ids.npy"));
}

// --- round trips --------------------------------------------------------------

TEST(NpyTest, Float32RoundTripsForSeveralRanks) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {2, 3}, {2, 3, 4}, {0, 7}, {0}};
  for (const auto& shape : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> data(n);
    for (int64_t i = 0; i < n; ++i) data[i] = 0.5f * static_cast<float>(i) - 3.25f;
    const std::string path = TempPath("roundtrip.npy");
    ASSERT_TRUE(WriteNpyFloat32(path, shape, data.data()).ok());
    EXPECT_EQ(ReadFileBytes(path).size() % 64, (n * 4) % 64) << "data starts 64-byte aligned";
    std::vector<int64_t> got_shape = {99};
    auto got = ReadNpyFloat32(path, &got_shape);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got_shape, shape);
    EXPECT_EQ(*got, data);
  }
}

TEST(NpyTest, Int64RoundTripsAsTokenIds) {
  const std::string path = TempPath("ids.npy");
  const std::vector<int64_t> values = {0, 1, 31999, std::numeric_limits<int32_t>::max()};
  ASSERT_TRUE(WriteNpyInt64(path, values).ok());
  auto ids = ReadNpyTokenIds(path);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{0, 1, 31999, std::numeric_limits<int32_t>::max()}));

  auto array = ReadNpy(path);
  ASSERT_TRUE(array.ok());
  EXPECT_EQ(array->dtype, "<i8");
  EXPECT_EQ(array->shape, (std::vector<int64_t>{4}));
}

TEST(NpyTest, AcceptsInt32TokenIds) {
  const std::string path = TempPath("ids32.npy");
  WriteFileBytes(path, MakeNpy(Dict("<i4", "(3,)"), RawBytes(std::vector<int32_t>{7, 0, 42})));
  auto ids = ReadNpyTokenIds(path);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{7, 0, 42}));
}

TEST(NpyTest, ConvertsFloat64) {
  const std::string path = TempPath("f8.npy");
  WriteFileBytes(path,
                 MakeNpy(Dict("<f8", "(2, 2)"), RawBytes(std::vector<double>{1.5, -2, 1e-3, 3})));
  std::vector<int64_t> shape;
  auto got = ReadNpyFloat32(path, &shape);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(*got, (std::vector<float>{1.5f, -2.0f, 1e-3f, 3.0f}));
  EXPECT_TRUE(ReadNpyFloat32(path, nullptr).ok());
}

TEST(NpyTest, ReadsVersion2AndToleratesHeaderVariants) {
  const std::string path = TempPath("v2.npy");
  // Keys in another order, double quotes, no trailing comma, format 2.0.
  WriteFileBytes(path, MakeNpy("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i8\"}",
                               RawBytes(std::vector<int64_t>{3, 4}), /*major=*/2));
  auto ids = ReadNpyTokenIds(path);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{3, 4}));
}

TEST(NpyTest, WriteNpyChecksItsInput) {
  const std::string path = TempPath("bad_write.npy");
  NpyArray bad_size{"<f4", {2, 2}, std::vector<uint8_t>(15)};
  ExpectError(WriteNpy(path, bad_size), absl::StatusCode::kInvalidArgument, path, "needs 16 bytes");
  NpyArray bad_dtype{"<c8", {1}, std::vector<uint8_t>(8)};
  ExpectError(WriteNpy(path, bad_dtype), absl::StatusCode::kInvalidArgument, path, "dtype");
  ExpectError(WriteNpyFloat32(path, {2, -1}, nullptr), absl::StatusCode::kInvalidArgument, path,
              "negative dimension");
  ExpectError(WriteNpyFloat32(path, {2}, nullptr), absl::StatusCode::kInvalidArgument, path,
              "no data");
  const std::string no_dir = TempPath("no_such_dir/x.npy");
  ExpectError(WriteNpyInt64(no_dir, {1}), absl::StatusCode::kUnavailable, no_dir,
              "cannot open for writing");
}

// --- malformed files ----------------------------------------------------------

struct MalformedCase {
  const char* name;
  std::string contents;
  const char* needle;  // part of the expected message
};

TEST(NpyTest, RejectsEveryKindOfMalformedFile) {
  const std::string f4x2 = RawBytes(std::vector<float>{1, 2});
  std::string bad_version = MakeNpy(Dict("<f4", "(2,)"), f4x2);
  bad_version[6] = 4;
  std::string huge_header_len = MakeNpy(Dict("<f4", "(2,)"), f4x2);
  huge_header_len[8] = '\xff';
  huge_header_len[9] = '\xff';
  const std::vector<MalformedCase> cases = {
      {"empty", "", "too short"},
      {"bad_magic", "\x93NUMPZ" + MakeNpy(Dict("<f4", "(2,)"), f4x2).substr(6), "bad magic"},
      {"text", "hello world, this is not numpy", "bad magic"},
      {"bad_version", bad_version, "unsupported format version 4.0"},
      {"truncated_header", MakeNpy(Dict("<f4", "(2,)"), f4x2).substr(0, 40), "truncated header"},
      {"huge_header_len", huge_header_len, "truncated header"},
      {"truncated_data", MakeNpy(Dict("<f4", "(3,)"), f4x2), "truncated data"},
      {"trailing_data", MakeNpy(Dict("<f4", "(1,)"), f4x2), "unexpected bytes after the data"},
      {"fortran", MakeNpy(Dict("<f4", "(1, 2)", /*fortran=*/true), f4x2), "fortran_order is True"},
      {"big_endian", MakeNpy(Dict(">f4", "(2,)"), f4x2), "big-endian"},
      {"complex", MakeNpy(Dict("<c8", "(1,)"), f4x2), "unsupported dtype '<c8'"},
      {"missing_shape", MakeNpy("{'descr': '<f4', 'fortran_order': False, }", f4x2),
       "missing key 'shape'"},
      {"unknown_key",
       MakeNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", f4x2),
       "unexpected key 'x'"},
      {"duplicate_key", MakeNpy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False}", f4x2),
       "duplicate key"},
      {"negative_dim", MakeNpy(Dict("<f4", "(-2,)"), f4x2), "negative dimension"},
      {"bad_shape", MakeNpy(Dict("<f4", "(2 3)"), f4x2), "malformed header"},
      {"no_tuple_comma", MakeNpy(Dict("<f4", "(2)"), f4x2), "trailing comma"},
      {"huge_shape", MakeNpy(Dict("<f4", "(4294967296, 4294967296)"), f4x2), "too large"},
      {"dim_overflow", MakeNpy(Dict("<f4", "(99999999999999999999,)"), f4x2), "too large"},
      {"bad_bool", MakeNpy("{'descr': '<f4', 'fortran_order': false, 'shape': (2,), }", f4x2),
       "True or False"},
      {"unterminated", MakeNpy("{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", f4x2),
       "malformed header"},
      {"junk_after_dict", MakeNpy(Dict("<f4", "(2,)") + " x", f4x2), "after '}'"},
  };
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = TempPath(std::string("malformed_") + c.name + ".npy");
    WriteFileBytes(path, c.contents);
    auto array = ReadNpy(path);
    ASSERT_FALSE(array.ok());
    ExpectError(array.status(), absl::StatusCode::kInvalidArgument, path, c.needle);
    // The typed readers pass the same error through.
    EXPECT_FALSE(ReadNpyFloat32(path, nullptr).ok());
    EXPECT_FALSE(ReadNpyTokenIds(path).ok());
  }
}

TEST(NpyTest, MissingFileIsNotFound) {
  const std::string path = TempPath("does_not_exist.npy");
  ExpectError(ReadNpy(path).status(), absl::StatusCode::kNotFound, path, "no such file");
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kNotFound, path, "no such file");
}

TEST(NpyTest, DirectoryIsNotAnArray) {
  const std::string dir = ::testing::TempDir();
  ExpectError(ReadNpy(dir).status(), absl::StatusCode::kInvalidArgument, dir, "not a regular file");
}

TEST(NpyTest, TokenIdsRejectWrongDtypeRankAndRange) {
  const std::string path = TempPath("bad_ids.npy");
  WriteFileBytes(path, MakeNpy(Dict("<f4", "(2,)"), RawBytes(std::vector<float>{1, 2})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path,
              "must be int64 (<i8) or int32 (<i4), got '<f4'");

  WriteFileBytes(path, MakeNpy(Dict("<i8", "(1, 2)"), RawBytes(std::vector<int64_t>{1, 2})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path,
              "must be 1-D, got shape (1, 2)");

  WriteFileBytes(path, MakeNpy(Dict("<i8", "()"), RawBytes(std::vector<int64_t>{1})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path, "1-D");

  WriteFileBytes(path, MakeNpy(Dict("<i8", "(3,)"), RawBytes(std::vector<int64_t>{1, -5, 2})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path,
              "token id -5 at index 1");

  WriteFileBytes(path,
                 MakeNpy(Dict("<i8", "(2,)"), RawBytes(std::vector<int64_t>{1, int64_t{1} << 31})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path,
              "token id 2147483648 at index 1");

  WriteFileBytes(path, MakeNpy(Dict("<i4", "(2,)"), RawBytes(std::vector<int32_t>{-1, 2})));
  ExpectError(ReadNpyTokenIds(path).status(), absl::StatusCode::kInvalidArgument, path,
              "token id -1 at index 0");
}

TEST(NpyTest, Float32ReaderRejectsIntegerData) {
  const std::string path = TempPath("ints_as_floats.npy");
  ASSERT_TRUE(WriteNpyInt64(path, {1, 2}).ok());
  ExpectError(ReadNpyFloat32(path, nullptr).status(), absl::StatusCode::kInvalidArgument, path,
              "got '<i8'");
}

// --- streaming row writer --------------------------------------------------------

TEST(NpyRowWriterTest, StreamsRowsAndRewritesTheHeader) {
  const std::string path = TempPath("rows.npy");
  const int64_t cols = 5;
  auto writer = NpyFloat32RowWriter::Create(path, cols);
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<float> expected;
  for (int64_t batch = 1; batch <= 4; ++batch) {  // 1 + 2 + 3 + 4 = 10 rows
    std::vector<float> rows(batch * cols);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(expected.size() + i);
    ASSERT_TRUE((*writer)->Append(rows.data(), batch).ok());
    expected.insert(expected.end(), rows.begin(), rows.end());
  }
  ASSERT_TRUE((*writer)->Append(nullptr, 0).ok());
  EXPECT_EQ((*writer)->rows(), 10);
  ASSERT_TRUE((*writer)->Finish().ok());

  std::vector<int64_t> shape;
  auto got = ReadNpyFloat32(path, &shape);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(shape, (std::vector<int64_t>{10, cols}));
  EXPECT_EQ(*got, expected);
  EXPECT_EQ(ReadFileBytes(path).size(), 128u + expected.size() * 4);
}

TEST(NpyRowWriterTest, ZeroRowsGiveAnEmptyArray) {
  const std::string path = TempPath("rows_empty.npy");
  auto writer = NpyFloat32RowWriter::Create(path, 512);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Finish().ok());
  std::vector<int64_t> shape;
  auto got = ReadNpyFloat32(path, &shape);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(shape, (std::vector<int64_t>{0, 512}));
  EXPECT_TRUE(got->empty());
}

// A failed write of either writer is reported (Unavailable, naming the file)
// and never leaves a file that reads as an array of other contents.
TEST(NpyWriterTest, AFailingDiskIsReportedAndNeverPassesForAnArray) {
  const std::string path = TempPath("failing_disk.npy");
  const std::vector<float> rows = {1, 2, 3, 4, 5, 6};
  for (const bool streamed : {false, true}) {
    ForEachFailurePoint(
        [&](Env& env) -> absl::Status {
          if (!streamed) {
            NpyArray array{"<f4", {2, 3}, std::vector<uint8_t>(rows.size() * 4)};
            std::memcpy(array.bytes.data(), rows.data(), array.bytes.size());
            return WriteNpy(path, array, &env);
          }
          FOT_ASSIGN_OR_RETURN(auto writer, NpyFloat32RowWriter::Create(path, 3, &env));
          FOT_RETURN_IF_ERROR(writer->Append(rows.data(), 2));
          return writer->Finish();
        },
        [&](const absl::Status& status, int fail_at) {
          std::vector<int64_t> shape;
          auto read = ReadNpyFloat32(path, &shape);
          if (status.ok()) {
            ASSERT_TRUE(read.ok()) << read.status();
            EXPECT_EQ(*read, rows);
            return;
          }
          EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
          EXPECT_NE(status.message().find(path), std::string::npos) << status;
          // What is left is unreadable, the stream's 0-row placeholder, or
          // the whole array (a failure at the very end).
          if (read.ok() && !(streamed && shape[0] == 0)) {
            EXPECT_EQ(*read, rows) << "failing at " << fail_at;
          }
        });
  }
}

TEST(NpyRowWriterTest, UnfinishedFileIsRejectedByReaders) {
  const std::string path = TempPath("rows_unfinished.npy");
  {
    auto writer = NpyFloat32RowWriter::Create(path, 2);
    ASSERT_TRUE(writer.ok()) << writer.status();
    const float row[2] = {1, 2};
    ASSERT_TRUE((*writer)->Append(row, 1).ok());
  }  // destroyed without Finish()
  ExpectError(ReadNpy(path).status(), absl::StatusCode::kInvalidArgument, path,
              "unexpected bytes after the data");
}

TEST(NpyRowWriterTest, MisuseIsReported) {
  const std::string path = TempPath("rows_misuse.npy");
  ExpectError(NpyFloat32RowWriter::Create(path, -1).status(), absl::StatusCode::kInvalidArgument,
              path, "cols >= 0");
  const std::string no_dir = TempPath("no_such_dir/rows.npy");
  ExpectError(NpyFloat32RowWriter::Create(no_dir, 3).status(), absl::StatusCode::kUnavailable,
              no_dir, "cannot open for writing");

  auto writer = NpyFloat32RowWriter::Create(path, 3);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ExpectError((*writer)->Append(nullptr, -1), absl::StatusCode::kInvalidArgument, path, "negative");
  ExpectError((*writer)->Append(nullptr, 1), absl::StatusCode::kInvalidArgument, path, "null");
  ASSERT_TRUE((*writer)->Finish().ok());
  const float row[3] = {0, 0, 0};
  ExpectError((*writer)->Append(row, 1), absl::StatusCode::kFailedPrecondition, path,
              "after Finish");
  ExpectError((*writer)->Finish(), absl::StatusCode::kFailedPrecondition, path, "twice");
}

}  // namespace
}  // namespace fot
