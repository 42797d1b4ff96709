// Log lines about calls refused for their credentials (UNAUTHENTICATED,
// PERMISSION_DENIED), so that an operator sees a client with a revoked key,
// a key used beyond its scope or a stranger probing the port: which API and
// method, from which peer, and why. The key itself never appears (the
// statuses of api_keys.h do not carry it).
//
// A flood of refusals (a scan, a retry loop) is summarised: at most
// kLinesPerWindow lines per kWindow, then one line counting those left out,
// written with the next refusal after the window or when the log is
// destroyed.
//
// Thread safety: Refused may be called from any thread; the sink is called
// with the log's lock held, one line at a time.
#ifndef FOTSERVE_SRC_SERVER_REFUSAL_LOG_H_
#define FOTSERVE_SRC_SERVER_REFUSAL_LOG_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace fot {

class RefusalLog {
 public:
  static constexpr int kLinesPerWindow = 10;
  static constexpr absl::Duration kWindow = absl::Seconds(1);

  // `sink` receives each line without a newline; `now` is the clock.
  explicit RefusalLog(std::function<void(std::string_view line)> sink,
                      std::function<absl::Time()> now = absl::Now);
  ~RefusalLog();  // writes the count of lines still left out
  RefusalLog(const RefusalLog&) = delete;
  RefusalLog& operator=(const RefusalLog&) = delete;

  // A call of `method` over `api` ("grpc", "http") from `peer` got `status`.
  // Statuses other than UNAUTHENTICATED and PERMISSION_DENIED are ignored.
  void Refused(std::string_view api, std::string_view method, std::string_view peer,
               const absl::Status& status);

 private:
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::function<void(std::string_view)> sink_;
  const std::function<absl::Time()> now_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int lines_ ABSL_GUARDED_BY(mu_) = 0;         // written in this window
  int64_t left_out_ ABSL_GUARDED_BY(mu_) = 0;  // not written since the last count
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_REFUSAL_LOG_H_
