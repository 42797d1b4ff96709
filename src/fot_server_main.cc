// fot-server: serves a model over gRPC (proto/fot.proto) — sessions with a
// kNN memory, documents streamed in, generation with retrieval traces, memory
// inspection — plus gRPC health checking and reflection.
//
//   fot-server --model DIR --data-dir DATA [--listen 127.0.0.1:50051]
//
// Loads the model once; sessions saved in --data-dir load at startup, and
// every acknowledged ingest is saved there. SIGINT / SIGTERM shut down
// gracefully: new calls get UNAVAILABLE, running ones get a few seconds.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/command_line.h"
#include "src/engine/engine.h"
#include "src/server/service.h"
#include "src/server/session_manager.h"
#include "src/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Model folder: config.json, model.safetensors, tokenizer.model");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve on (host:port; port 0 picks one)");
ABSL_FLAG(std::string, data_dir, "",
          "Folder for saved sessions and snapshots (created if missing); without it sessions "
          "live in memory only");
ABSL_FLAG(std::string, default_retrieval, "dense",
          "Retrieval of sessions that do not choose: 'dense', 'knn:K' or 'knn:K:exact'");
ABSL_FLAG(std::string, default_index, "flat",
          "Memory index of sessions that do not choose: flat, hnsw or ivf, with parameters as in "
          "'hnsw:m=32' or 'ivf:max_scan=0.1' (dtype defaults to the config's mem_dtype)");
ABSL_FLAG(int, max_sessions, 64, "Most sessions held at once");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest request message accepted, in bytes");
ABSL_FLAG(int, threads, 0,
          "Most gRPC worker threads (one per running call; 0: gRPC's default). The engine's own "
          "parallelism follows OMP_NUM_THREADS");
ABSL_FLAG(int, save_interval_ms, 1000,
          "Least time between two saves of a session during an ingest stream (0: save at every "
          "chunk); the end of a document always saves. Acknowledgements report only saved data");
ABSL_FLAG(double, save_cost_factor, 4,
          "Also wait this many times the last save's duration between saves, so that saving "
          "(which rewrites the session) takes at most about 1/(1+factor) of an ingest");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "How long running calls may finish after a signal");

namespace fot {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "fot-server: %s\n", message.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv, "fot-server --model DIR [--data-dir DIR] [--listen HOST:PORT]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");

  // Signals are taken by sigwait() below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto engine = Engine::Load(model_dir);
  if (!engine.ok()) return Fail(std::string(engine.status().message()));
  auto tokenizer = Tokenizer::Load(model_dir + "/tokenizer.model");
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));

  SessionManagerOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.min_save_interval = absl::Milliseconds(absl::GetFlag(FLAGS_save_interval_ms));
  options.save_cost_factor = absl::GetFlag(FLAGS_save_cost_factor);
  options.defaults.memory = (*engine)->DefaultMemoryOptions();
  auto defaults = ResolveSessionOptions(
      {absl::GetFlag(FLAGS_default_retrieval), absl::GetFlag(FLAGS_default_index), "", 0},
      options.defaults, (*engine)->config());
  if (!defaults.ok()) return Fail(absl::StrCat("default options: ", defaults.status().message()));
  options.defaults = *defaults;

  std::vector<std::string> load_errors;
  auto manager = SessionManager::Open(engine->get(), tokenizer->get(), options, &load_errors);
  if (!manager.ok()) return Fail(std::string(manager.status().message()));
  for (const std::string& e : load_errors)
    std::fprintf(stderr, "fot-server: not loaded: %s\n", e.c_str());

  ServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.threads = absl::GetFlag(FLAGS_threads);
  server_options.model_dir = model_dir;
  auto server = FotServer::Start(manager->get(), server_options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  const std::string& listen = server_options.listen;
  std::fprintf(stderr, "fot-server: serving %s on %s:%d with %d session(s)\n", model_dir.c_str(),
               listen.substr(0, listen.rfind(':')).c_str(), (*server)->port(), (*manager)->size());

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr, "fot-server: %s, shutting down\n",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown(absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms)));
  (*server)->Wait();
  return 0;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) { return fot::Main(argc, argv); }
