// Fuzzes the migration of a data directory of the earlier layout, all that
// the server still reads of it: SessionManager::Open (MigrateOldLayout) finds
// sessions/NAME/state/ and snapshots/NAME/state/, reads each with
// Session::Load (session.json, stream.bin, and memory/: its MANIFEST, the
// stores memory/layer_L/head_H/, a lambda session's memory/lambda/) and
// NAME/ingest.json, and moves it into the storage engine
// (SessionStore::Import), which the server then loads it from.
//
// Input: a tree of files (store_files.h: parts "PATH\nCONTENT", PATH
// relative to the data directory; stores' "*" checksums are filled in).
//
// Checks: Open succeeds whatever the files hold; a session or snapshot whose
// files were moved (and removed) loads from the storage engine, is
// consistent and answers queries, and after a restart is still there with
// the same stream and memory; one that was not moved keeps its files and
// was reported.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/store_files.h"
#include "rocksdb/env.h"
#include "src/engine/session.h"
#include "src/server/session_manager.h"
#include "src/server/validation.h"

namespace fot::fuzz {
namespace {

namespace fs = std::filesystem;

// The names under <data_dir>/<root>/ that MigrateOldLayout tries to move.
std::set<std::string> Candidates(const std::string& data_dir, const std::string& root) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_dir + "/" + root, ec)) {
    const std::string name = entry.path().filename().string();
    if (ValidateName(name, "").ok() && fs::exists(entry.path() / "state", ec)) names.insert(name);
  }
  return names;
}

void CheckState(const Session& session) {
  const IngestProgress progress = session.Progress();
  FOT_FUZZ_CHECK(
      progress.committed_tokens >= 0 && progress.committed_tokens <= progress.stream_tokens,
      "commit point outside the stream");
  FOT_FUZZ_CHECK(static_cast<int64_t>(session.StreamTokens(0, progress.stream_tokens).size()) ==
                     progress.stream_tokens,
                 "StreamTokens disagrees with Progress");
  for (const DocumentInfo& d : session.Documents()) {
    FOT_FUZZ_CHECK(session.Document(d.name).ok(), "a listed document is not found");
  }
  session.Stats();
  for (int layer : session.memory_layers()) {
    session.ListEntries(layer, 0, 4).status().IgnoreError();
    session.EntryContext(layer, 0, 2).status().IgnoreError();
  }
}

// Queries may fail (a stream of ids outside the vocabulary, say) but must
// not crash.
void RunQueries(Session& session) {
  QueryOptions options;
  options.max_tokens = 2;
  options.stop_at_eos = false;
  const int question[] = {5, 17};
  session.Generate(question, options).status().IgnoreError();
  session.Score({question, 1}, {question + 1, 1}, std::nullopt).status().IgnoreError();
  session.Search(question, 2, std::nullopt).status().IgnoreError();
}

void CheckSession(Session& session) {
  CheckState(session);
  RunQueries(session);
}

// What a restart must give back of a session.
struct Summary {
  int64_t stream_tokens;
  int64_t committed_tokens;
  int64_t memory_entries;
  size_t documents;
  bool operator==(const Summary&) const = default;
};

std::string Describe(const std::map<std::string, Summary>& sessions) {
  std::string out;
  for (const auto& [name, s] : sessions) {
    out += name + ": stream " + std::to_string(s.stream_tokens) + ", committed " +
           std::to_string(s.committed_tokens) + ", entries " + std::to_string(s.memory_entries) +
           ", documents " + std::to_string(s.documents) + "; ";
  }
  return out.empty() ? "none" : out;
}

std::map<std::string, Summary> Summarize(const SessionManager& manager) {
  std::map<std::string, Summary> out;
  for (const std::shared_ptr<ManagedSession>& s : manager.List()) {
    const IngestProgress p = s->session().Progress();
    out[s->name()] = {p.stream_tokens, p.committed_tokens, s->session().memory_entries(),
                      s->session().Documents().size()};
  }
  return out;
}

// A server's start on `data_dir`, its database in `file_system`; appends
// the errors it reports to *reported.
std::unique_ptr<SessionManager> Start(const std::string& data_dir,
                                      const std::shared_ptr<rocksdb::FileSystem>& file_system,
                                      std::vector<std::string>* reported) {
  SessionManagerOptions options;
  options.data_dir = data_dir;
  options.file_system = file_system;
  options.defaults.memory = SmallEngine().DefaultMemoryOptions();
  options.on_load_error = [reported](const std::string& e) { reported->push_back(e); };
  absl::StatusOr<std::unique_ptr<SessionManager>> manager =
      SessionManager::Open(&SmallEngine(), &TrainedTokenizer(), options);
  FOT_FUZZ_CHECK(manager.ok(), "a data directory of the earlier layout does not open: " +
                                   manager.status().ToString());
  (*manager)->WaitUntilLoaded();
  return *std::move(manager);
}

// Each candidate either moved (its files gone, the storage engine serving
// it) or stayed, reported. Returns how many stayed.
int CheckSessionsMoved(SessionManager& manager, const std::string& data_dir,
                       const std::set<std::string>& sessions) {
  int stayed = 0;
  for (const std::string& name : sessions) {
    if (fs::exists(data_dir + "/sessions/" + name)) {
      ++stayed;
      continue;
    }
    absl::StatusOr<std::shared_ptr<ManagedSession>> session = manager.Get(name);
    FOT_FUZZ_CHECK(session.ok(),
                   "migrated session '" + name + "' does not load: " + session.status().ToString());
  }
  return stayed;
}

int CheckSnapshotsMoved(SessionManager& manager, const std::string& data_dir,
                        const std::set<std::string>& snapshots) {
  int stayed = 0;
  for (const std::string& name : snapshots) {
    if (fs::exists(data_dir + "/snapshots/" + name)) {
      ++stayed;
      continue;
    }
    absl::StatusOr<std::shared_ptr<ManagedSession>> loaded =
        manager.LoadSnapshot(name, "fuzz-from-snapshot");
    FOT_FUZZ_CHECK(loaded.ok(),
                   "migrated snapshot '" + name + "' does not load: " + loaded.status().ToString());
    CheckSession((*loaded)->session());
    manager.Delete("fuzz-from-snapshot").IgnoreError();
  }
  return stayed;
}

void Migrate(const std::string& data_dir) {
  const std::set<std::string> sessions = Candidates(data_dir, "sessions");
  const std::set<std::string> snapshots = Candidates(data_dir, "snapshots");
  const std::unique_ptr<rocksdb::Env> memory(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  std::vector<std::string> reported;
  std::unique_ptr<SessionManager> manager = Start(data_dir, memory->GetFileSystem(), &reported);
  const int stayed = CheckSessionsMoved(*manager, data_dir, sessions) +
                     CheckSnapshotsMoved(*manager, data_dir, snapshots);
  FOT_FUZZ_CHECK(static_cast<int>(reported.size()) >= stayed,
                 "a session that was not migrated was not reported");
  for (const std::shared_ptr<ManagedSession>& s : manager->List()) CheckSession(s->session());
  const std::map<std::string, Summary> before = Summarize(*manager);
  manager.reset();
  reported.clear();
  manager = Start(data_dir, memory->GetFileSystem(), &reported);
  const std::map<std::string, Summary> after = Summarize(*manager);
  FOT_FUZZ_CHECK(after == before, "a restart changed the migrated sessions: before " +
                                      Describe(before) + "after " + Describe(after) +
                                      (reported.empty() ? "" : " (" + reported.front() + ")"));
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot::fuzz;
  const std::string data_dir = FreshDir("migration") + "/data";
  WriteTree(data_dir, SplitParts(AsText(data, size)));
  Migrate(data_dir);
  return 0;
}
