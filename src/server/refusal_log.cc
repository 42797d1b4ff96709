#include "src/server/refusal_log.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace fot {

RefusalLog::RefusalLog(std::function<void(std::string_view line)> sink,
                       std::function<absl::Time()> now)
    : sink_(std::move(sink)), now_(std::move(now)) {}

RefusalLog::~RefusalLog() {
  absl::MutexLock lock(&mu_);
  FlushLocked();
}

void RefusalLog::FlushLocked() {
  if (left_out_ == 0) return;
  sink_(absl::StrCat(left_out_, " more refused call", left_out_ == 1 ? " was" : "s were",
                     " not logged (at most ", kLinesPerWindow, " lines per ",
                     absl::FormatDuration(kWindow), ")"));
  left_out_ = 0;
}

void RefusalLog::Refused(std::string_view api, std::string_view method, std::string_view peer,
                         const absl::Status& status) {
  if (!absl::IsUnauthenticated(status) && !absl::IsPermissionDenied(status)) return;
  absl::MutexLock lock(&mu_);
  const absl::Time now = now_();
  if (now - window_start_ >= kWindow) {
    FlushLocked();
    window_start_ = now;
    lines_ = 0;
  }
  if (lines_ == kLinesPerWindow) {
    ++left_out_;
    return;
  }
  ++lines_;
  std::string line = "refused ";
  line.append(api).append(" ").append(method).append(" from ");
  line.append(peer.empty() ? std::string_view("an unknown peer") : peer);
  absl::StrAppend(&line, ": ", absl::StatusCodeToString(status.code()), ": ", status.message());
  sink_(line);
}

}  // namespace fot
