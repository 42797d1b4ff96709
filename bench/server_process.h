// A fot-server started as a child process for benchmarks: on a free loopback
// port with its own data directory, killed when this object goes (or when the
// benchmark process dies), with its resident memory read from /proc.
//
// Thread safety: address() and ReadRss() may be called from any thread;
// Alive() and the destructor from the thread that started it.
#ifndef FOTSERVE_BENCH_SERVER_PROCESS_H_
#define FOTSERVE_BENCH_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace fot {

struct ServerRss {
  double rss_mib = 0;  // VmRSS: resident now
  double hwm_mib = 0;  // VmHWM: the peak so far
};

class ServerProcess {
 public:
  // Runs `binary --model model --data-dir work/data --listen 127.0.0.1:0`, its
  // output in work/server.log, and waits (up to a minute) until it listens
  // and grpc.health.v1.Health reports SERVING. Call before starting threads
  // (it forks).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary,
                                                              const std::string& model,
                                                              const std::string& work);
  // SIGTERM, then SIGKILL if it has not exited after 5 s.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  pid_t pid() const { return pid_; }
  bool Alive();
  ServerRss ReadRss() const;  // from /proc/PID/status
  std::string Log() const;    // what it has printed so far

 private:
  ServerProcess() = default;
  bool HealthServing() const;

  pid_t pid_ = -1;
  bool exited_ = false;
  std::string log_;
  std::string address_;
};

}  // namespace fot

#endif  // FOTSERVE_BENCH_SERVER_PROCESS_H_
