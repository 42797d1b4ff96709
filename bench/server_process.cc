#include "bench/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace fot {

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(const std::string& binary,
                                                                    const std::string& model,
                                                                    const std::string& work) {
  auto server = std::unique_ptr<ServerProcess>(new ServerProcess);
  server->log_ = work + "/server.log";
  std::vector<std::string> args = {binary,         "--model",  model,        "--data-dir",
                                   work + "/data", "--listen", "127.0.0.1:0"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd = open(server->log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log_fd < 0) return absl::InternalError("cannot create " + server->log_);
  server->pid_ = fork();
  if (server->pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark
    sigset_t none;                     // the server takes its own signals
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (server->pid_ < 0) return absl::InternalError("fork failed");

  // The server prints "fot-server: serving MODEL on 127.0.0.1:PORT ..." once
  // it listens.
  const std::regex serving(" on 127\\.0\\.0\\.1:([0-9]+)");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  const auto failed = [&](const std::string& what) {
    return absl::UnavailableError(absl::StrCat(binary, ": ", what, "; its log:\n", server->Log()));
  };
  while (server->address_.empty()) {
    std::smatch match;
    const std::string text = server->Log();
    if (std::regex_search(text, match, serving)) server->address_ = "127.0.0.1:" + match[1].str();
    if (!server->Alive()) return failed("exited");
    if (std::chrono::steady_clock::now() > deadline) return failed("did not listen in a minute");
    if (server->address_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  while (!server->HealthServing()) {
    if (!server->Alive()) return failed("exited");
    if (std::chrono::steady_clock::now() > deadline) return failed("health is not SERVING");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return server;
}

ServerProcess::~ServerProcess() {
  if (pid_ <= 0 || !Alive()) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100 && Alive(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (Alive()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool ServerProcess::Alive() {
  if (exited_) return false;
  if (waitpid(pid_, nullptr, WNOHANG) == 0) return true;
  exited_ = true;
  return false;
}

ServerRss ServerProcess::ReadRss() const {
  ServerRss rss;
  std::ifstream status(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    double kib = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lf kB", &kib) == 1) rss.rss_mib = kib / 1024;
    if (std::sscanf(line.c_str(), "VmHWM: %lf kB", &kib) == 1) rss.hwm_mib = kib / 1024;
  }
  return rss;
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// grpc.health.v1.Health/Check for the whole server, as a generic call (the
// request is empty; the response "\x08\x01" is status SERVING).
bool ServerProcess::HealthServing() const {
  auto channel = grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue queue;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  const grpc::Slice empty(std::string(""));
  grpc::ByteBuffer request(&empty, 1), response;
  auto call = generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request, &queue);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  queue.Next(&tag, &ok);
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  if (!status.ok()) return false;
  std::vector<grpc::Slice> slices;
  (void)response.Dump(&slices);
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return bytes == std::string("\x08\x01", 2);
}

}  // namespace fot
