// Fuzzes the storage engine's records (src/storage/session_store.h): a
// RocksDB database whose records come from the input, opened as a server
// opens its data directory: SessionStore::Open, the garbage collection every
// start runs, SessionStore::Load of every session and Session::Restore of
// it, snapshots loaded as new sessions, and deletes.
//
// Input: parts "KEY\nVALUE" (fuzz_support.h), each one record of a fresh
// database (in memory: rocksdb::NewMemEnv), keys as session_store.h lays
// them out (n/NAME, p/NAME, d/DATA/tok/..., next_data_id, ...). A part whose
// KEY starts with "index/" is instead a file of the memory checkpoints'
// directory (<data_dir>/index/...), where "d/DATA/ckpt" records point.
//
// Checks: a session that loads and restores is consistent, answers queries
// without crashing, and reads back (ChangesSince) the stream its records
// hold.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/store_files.h"
#include "rocksdb/env.h"
#include "src/engine/session.h"
#include "src/storage/database.h"
#include "src/storage/session_store.h"

namespace fot::fuzz {
namespace {

struct Input {
  std::vector<std::pair<std::string_view, std::string_view>> records;
  std::vector<std::string_view> files;  // WriteTree parts, relative to the data directory
};

Input ParseInput(std::string_view text) {
  Input input;
  for (std::string_view part : SplitParts(text)) {
    if (part.starts_with("index/")) {
      input.files.push_back(part);
      continue;
    }
    const size_t newline = part.find('\n');
    if (newline == std::string_view::npos || newline == 0) continue;
    input.records.emplace_back(part.substr(0, newline), part.substr(newline + 1));
  }
  return input;
}

// The records, in one batch, into a fresh database in `file_system`.
void WriteRecords(const std::string& dir, const std::shared_ptr<rocksdb::FileSystem>& file_system,
                  const Input& input) {
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(dir + "/db", file_system);
  FOT_FUZZ_CHECK(db.ok(), "a fresh database does not open: " + db.status().ToString());
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : input.records) {
    batch.Put(rocksdb::Slice(key.data(), key.size()), rocksdb::Slice(value.data(), value.size()));
  }
  FOT_FUZZ_CHECK((*db)->Write(&batch).ok(), "the records cannot be written");
}

void CheckRestored(Session& session, const LoadedSession& loaded) {
  const IngestProgress progress = session.Progress();
  FOT_FUZZ_CHECK(progress.stream_tokens == loaded.records.cursor.stream,
                 "the restored stream is not the stored one");
  FOT_FUZZ_CHECK(
      progress.committed_tokens >= 0 && progress.committed_tokens <= progress.stream_tokens,
      "commit point outside the stream");
  absl::StatusOr<SessionChanges> changes = session.ChangesSince({});
  FOT_FUZZ_CHECK(changes.ok(), "a restored session cannot be read back");
  FOT_FUZZ_CHECK(static_cast<int64_t>(changes->stream.size()) == progress.stream_tokens,
                 "ChangesSince disagrees with Progress");
  QueryOptions options;
  options.max_tokens = 2;
  options.stop_at_eos = false;
  const int question[] = {5, 17};
  session.Generate(question, options).status().IgnoreError();
  session.Search(question, 2, std::nullopt).status().IgnoreError();
}

// The harness follows only checkpoint records that name a directory of the
// index directory, as the server writes them: one that points elsewhere
// ("../..") would have inputs read whatever lies there on this machine.
bool CheckpointInIndex(const LoadedSession& loaded) {
  const std::string& dir = loaded.records.checkpoint;
  return dir.find('/') == std::string::npos && dir != "." && dir != "..";
}

void Restore(absl::StatusOr<LoadedSession> loaded) {
  if (!loaded.ok() || !CheckpointInIndex(*loaded)) return;
  absl::StatusOr<std::unique_ptr<Session>> session =
      Session::Restore(&SmallEngine(), loaded->stored, loaded->entries);
  if (session.ok()) CheckRestored(**session, *loaded);
}

void UseStore(SessionStore& store) {
  store.CollectGarbage().IgnoreError();  // what every start runs first
  const absl::StatusOr<std::vector<std::string>> names = store.SessionNames();
  if (!names.ok()) return;
  for (const std::string& name : *names) Restore(store.Load(name));
  const absl::StatusOr<std::vector<std::string>> snapshots = store.SnapshotNames();
  if (snapshots.ok()) {
    for (const std::string& snapshot : *snapshots) {
      Restore(store.LoadSnapshot(snapshot, "fuzz-from-" + snapshot));
    }
  }
  for (const std::string& name : *names) store.Delete(name).IgnoreError();
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot;
  const fuzz::Input input = fuzz::ParseInput(fuzz::AsText(data, size));
  const std::string dir = fuzz::FreshDir("session_store");
  fuzz::WriteTree(dir, input.files);
  const std::unique_ptr<rocksdb::Env> memory(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  const std::shared_ptr<rocksdb::FileSystem>& file_system = memory->GetFileSystem();
  fuzz::WriteRecords(dir, file_system, input);
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      SessionStore::Open(dir, &fuzz::SmallEngine(), Env::Default(), file_system);
  if (store.ok()) fuzz::UseStore(**store);
  return 0;
}
