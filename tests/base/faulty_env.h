// An Env for tests whose Nth write-side operation fails, as a full or
// failing disk would: every creation, append, close (fsync), rename, exchange,
// directory creation, directory fsync and removal counts as one operation.
// Reads pass through. Not thread-safe: one writer at a time.
#ifndef FOTSERVE_TESTS_BASE_FAULTY_ENV_H_
#define FOTSERVE_TESTS_BASE_FAULTY_ENV_H_

#include <cerrno>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/env.h"

namespace fot {

class FaultyEnv : public Env {
 public:
  // Fails operation number `fail_at` (1-based; 0: none) with `error_number`.
  explicit FaultyEnv(int fail_at = 0, int error_number = ENOSPC)
      : fail_at_(fail_at), error_number_(error_number) {}

  // A filesystem without RENAME_EXCHANGE (Exchange is Unimplemented).
  void DisableExchange() { exchange_ = false; }

  int operations() const { return operations_; }  // counted so far
  bool failed() const { return failed_; }         // the injected failure happened

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    if (absl::Status s = Count("creating", path); !s.ok()) return s;
    auto file = base_->NewWritableFile(path);
    if (!file.ok()) return file.status();
    return std::unique_ptr<WritableFile>(new File(this, path, std::move(*file)));
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    return base_->ReadFile(path);
  }
  absl::Status CreateDirs(const std::string& path) override {
    if (absl::Status s = Count("creating directory", path); !s.ok()) return s;
    return base_->CreateDirs(path);
  }
  absl::Status SyncDir(const std::string& path) override {
    if (absl::Status s = Count("fsync of directory", path); !s.ok()) return s;
    return base_->SyncDir(path);
  }
  absl::Status Rename(const std::string& from, const std::string& to) override {
    if (absl::Status s = Count("renaming", from); !s.ok()) return s;
    return base_->Rename(from, to);
  }
  absl::Status Exchange(const std::string& a, const std::string& b) override {
    if (absl::Status s = Count("exchanging", a); !s.ok()) return s;
    if (!exchange_) return absl::UnimplementedError("no RENAME_EXCHANGE here");
    return base_->Exchange(a, b);
  }
  absl::Status RemoveAll(const std::string& path) override {
    if (absl::Status s = Count("removing", path); !s.ok()) return s;
    return base_->RemoveAll(path);
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  bool Exists(const std::string& path) override { return base_->Exists(path); }

 private:
  class File : public WritableFile {
   public:
    File(FaultyEnv* env, std::string path, std::unique_ptr<WritableFile> base)
        : env_(env), path_(std::move(path)), base_(std::move(base)) {}
    absl::Status Append(std::string_view data) override {
      if (absl::Status s = env_->Count("writing", path_); !s.ok()) return s;
      return base_->Append(data);
    }
    absl::Status WriteAt(uint64_t offset, std::string_view data) override {
      if (absl::Status s = env_->Count("writing", path_); !s.ok()) return s;
      return base_->WriteAt(offset, data);
    }
    absl::Status Close() override {
      if (absl::Status s = env_->Count("fsync of", path_); !s.ok()) return s;
      return base_->Close();
    }

   private:
    FaultyEnv* env_;
    std::string path_;
    std::unique_ptr<WritableFile> base_;
  };

  absl::Status Count(const char* what, const std::string& path) {
    if (++operations_ != fail_at_) return absl::OkStatus();
    failed_ = true;
    return FileErrorStatus(error_number_, absl::StrCat(what, " ", path, " (injected)"));
  }

  Env* base_ = Env::Default();
  int fail_at_;
  int error_number_;
  int operations_ = 0;
  bool failed_ = false;
  bool exchange_ = true;
};

// Runs `write` with an Env failing at operation 1, 1 + stride, … until a run
// completes without reaching the failure; calls `check(status, fail_at)`
// after each failing run. Returns the number of operations a clean run takes.
// (A stride > 1 samples the failure points of a long write.)
template <typename Write, typename Check>
int ForEachFailurePoint(Write write, Check check, int error_number = ENOSPC, int stride = 1) {
  for (int fail_at = 1;; fail_at += stride) {
    FaultyEnv env(fail_at, error_number);
    const absl::Status status = write(env);
    if (!env.failed()) return env.operations();
    check(status, fail_at);
  }
}

}  // namespace fot

#endif  // FOTSERVE_TESTS_BASE_FAULTY_ENV_H_
