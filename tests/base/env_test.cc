#include "base/env.h"

#include <cerrno>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/base/faulty_env.h"

namespace fot {
namespace {

std::string TempDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/env_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(EnvTest, WriteFileAtomicallyReplacesTheFileAndLeavesNoTemporary) {
  Env& env = *Env::Default();
  const std::string path = TempDir("replace") + "/f";
  ASSERT_TRUE(WriteFileAtomically(env, path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(env, path, "second").ok());
  EXPECT_EQ(*env.ReadFile(path), "second");
  EXPECT_FALSE(env.Exists(path + ".tmp"));
}

TEST(EnvTest, ReadFileOfAMissingFileIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(Env::Default()->ReadFile(TempDir("missing") + "/none").status()));
}

TEST(EnvTest, ListDirIsSortedWithoutDotEntries) {
  Env& env = *Env::Default();
  const std::string dir = TempDir("list");
  ASSERT_TRUE(WriteFileAtomically(env, dir + "/b", "").ok());
  ASSERT_TRUE(env.CreateDirs(dir + "/a").ok());
  EXPECT_EQ(*env.ListDir(dir), (std::vector<std::string>{"a", "b"}));
}

TEST(EnvTest, AFailedAtomicWriteKeepsThePreviousFile) {
  const std::string path = TempDir("failed_write") + "/f";
  ASSERT_TRUE(WriteFileAtomically(*Env::Default(), path, "previous").ok());
  const int clean = ForEachFailurePoint(
      [&](Env& env) { return WriteFileAtomically(env, path, "next"); },
      [&](const absl::Status& status, int fail_at) {
        const std::string now = *Env::Default()->ReadFile(path);
        if (status.ok()) {
          EXPECT_EQ(now, "next") << fail_at;
        } else {
          EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
          EXPECT_TRUE(now == "previous" || now == "next") << fail_at;
          ASSERT_TRUE(WriteFileAtomically(*Env::Default(), path, "previous").ok());
        }
      });
  EXPECT_GE(clean, 4);  // create, append, close, rename (and the directory fsync)
}

TEST(EnvTest, ReplaceDirectorySwapsInTheNewContents) {
  Env& env = *Env::Default();
  const std::string target = TempDir("replace_dir") + "/d";
  for (const std::string contents : {"one", "two"}) {
    const std::string staging = *MakeStagingDirectory(env, target);
    ASSERT_TRUE(WriteFileAtomically(env, staging + "/f", contents).ok());
    ASSERT_TRUE(ReplaceDirectory(env, staging, target).ok());
    EXPECT_EQ(*env.ReadFile(target + "/f"), contents);
    EXPECT_FALSE(env.Exists(staging));
  }
}

TEST(EnvTest, AFailedDirectoryReplacementKeepsAWholeDirectory) {
  const std::string target = TempDir("failed_dir") + "/d";
  auto save = [&](Env& env, const std::string& contents) -> absl::Status {
    absl::StatusOr<std::string> staging = MakeStagingDirectory(env, target);
    if (!staging.ok()) return staging.status();
    if (absl::Status s = WriteFileAtomically(env, *staging + "/f", contents); !s.ok()) return s;
    return ReplaceDirectory(env, *staging, target);
  };
  ASSERT_TRUE(save(*Env::Default(), "previous").ok());
  ForEachFailurePoint([&](Env& env) { return save(env, "next"); },
                      [&](const absl::Status& status, int fail_at) {
                        const absl::StatusOr<std::string> now =
                            Env::Default()->ReadFile(target + "/f");
                        ASSERT_TRUE(now.ok()) << "failure at " << fail_at << ": " << now.status();
                        EXPECT_TRUE(*now == "previous" || *now == "next") << fail_at;
                        if (!status.ok()) {
                          EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
                        }
                        ASSERT_TRUE(save(*Env::Default(), "previous").ok());
                      });
}

// Without RENAME_EXCHANGE the swap is two renames through `target`.old: a
// failure at any step still leaves a whole directory, and nothing stale.
TEST(EnvTest, ReplacementWithoutExchangeKeepsAWholeDirectory) {
  const std::string target = TempDir("no_exchange") + "/d";
  auto save = [&](Env& env, const std::string& contents) -> absl::Status {
    absl::StatusOr<std::string> staging = MakeStagingDirectory(env, target);
    if (!staging.ok()) return staging.status();
    if (absl::Status s = WriteFileAtomically(env, *staging + "/f", contents); !s.ok()) return s;
    return ReplaceDirectory(env, *staging, target);
  };
  ASSERT_TRUE(save(*Env::Default(), "previous").ok());
  ForEachFailurePoint(
      [&](FaultyEnv& env) {
        env.DisableExchange();
        return save(env, "next");
      },
      [&](const absl::Status& status, int fail_at) {
        const absl::StatusOr<std::string> now = Env::Default()->ReadFile(target + "/f");
        ASSERT_TRUE(now.ok()) << "failure at " << fail_at << ": " << now.status();
        EXPECT_TRUE(*now == "previous" || *now == "next") << fail_at;
        ASSERT_TRUE(save(*Env::Default(), "previous").ok());
      });
  FaultyEnv clean;
  clean.DisableExchange();
  ASSERT_TRUE(save(clean, "next").ok());
  EXPECT_EQ(*Env::Default()->ReadFile(target + "/f"), "next");
  EXPECT_FALSE(Env::Default()->Exists(target + ".old"));
}

TEST(EnvTest, InjectedErrorsCarryTheirErrno) {
  FaultyEnv env(1, EIO);
  const absl::Status status = env.CreateDirs(TempDir("eio") + "/x");
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("Input/output error"), std::string::npos) << status;
}

}  // namespace
}  // namespace fot
