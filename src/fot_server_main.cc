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
          "Folder of the storage engine holding sessions and snapshots (created if missing); "
          "without it sessions live in memory only");
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
ABSL_FLAG(int64_t, checkpoint_entries, 32768,
          "Checkpoint a session's memory (so that a restart replays only what follows) once this "
          "many entries, and an eighth of those checkpointed, have been added since the last");
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
  options.checkpoint_entries = absl::GetFlag(FLAGS_checkpoint_entries);
  options.on_load_error = [](const std::string& error) {
    std::fprintf(stderr, "fot-server: not loaded: %s\n", error.c_str());
  };
  options.defaults.memory = (*engine)->DefaultMemoryOptions();
  auto defaults = ResolveSessionOptions(
      {absl::GetFlag(FLAGS_default_retrieval), absl::GetFlag(FLAGS_default_index), "", 0},
      options.defaults, (*engine)->config());
  if (!defaults.ok()) return Fail(absl::StrCat("default options: ", defaults.status().message()));
  options.defaults = *defaults;

  auto manager = SessionManager::Open(engine->get(), tokenizer->get(), options);
  if (!manager.ok()) return Fail(std::string(manager.status().message()));

  ServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  server_options.threads = absl::GetFlag(FLAGS_threads);
  server_options.model_dir = model_dir;
  auto server = FotServer::Start(manager->get(), server_options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  const std::string& listen = server_options.listen;
  std::fprintf(stderr, "fot-server: serving %s on %s:%d (stored sessions load in the background)\n",
               model_dir.c_str(), listen.substr(0, listen.rfind(':')).c_str(), (*server)->port());

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
