// SessionStore (src/storage/session_store.h) on damaged records: the garbage
// collection every start runs reads every header, checkpoint record and data
// id, and a damaged one must not stop the server from starting. Found by
// fuzz/session_store: a data id key that was no hexadecimal number aborted
// the process (an uncaught std::invalid_argument), as did a checkpoint
// directory of another type than a string; and an entry record whose count
// made its byte size overflow. (ManagerTest in
// tests/src/server/session_manager_test.cc covers sessions whose own records
// are damaged.)
#include "src/storage/session_store.h"

#include <bit>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "rocksdb/write_batch.h"
#include "src/engine/session.h"
#include "src/storage/database.h"
#include "tests/src/small_model.h"

namespace fot {
namespace {

constexpr char kLiveData[] = "d/0000000000000001/";
constexpr char kDeadData[] = "d/0000000000000009/";

// A data directory whose database holds one session (data 1), one snapshot,
// data 9 that nothing reaches, and the damaged records of the test.
std::string WriteDataDirectory() {
  const std::string dir = ::testing::TempDir() + "/session_store_damaged";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(dir + "/db");
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return dir;
  rocksdb::WriteBatch batch;
  batch.Put("n/live", R"({"format":"fotserve-store 1","data":1,"options":"","base":[]})");
  batch.Put("i/0000000000000001", "");
  batch.Put(std::string(kLiveData) + "ckpt", R"({"dir":7,"entries":0})");  // dir: a number
  batch.Put("p/snap", R"({"segments":[],"checkpoint":["not","a","string"]})");
  batch.Put("i/0000000000000009", "");
  batch.Put(std::string(kDeadData) + "len", R"({"stream":4})");
  batch.Put("i/not-a-data-id", "");
  EXPECT_TRUE((*db)->Write(&batch).ok());
  return dir;
}

TEST(SessionStoreTest, GarbageCollectionReadsDamagedRecordsAndStillCollects) {
  const std::unique_ptr<Engine> engine =
      LoadEngine(WriteSmallModel("session_store_model", SmallModelConfig()));
  const std::string dir = WriteDataDirectory();
  {
    absl::StatusOr<std::unique_ptr<SessionStore>> store =
        SessionStore::Open(dir, engine.get(), Env::Default());
    ASSERT_TRUE(store.ok()) << store.status();
    const absl::Status collected = (*store)->CollectGarbage();
    EXPECT_TRUE(collected.ok()) << collected;
  }
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(dir + "/db");
  ASSERT_TRUE(db.ok()) << db.status();
  // Data nothing reaches is gone; the live session's and the damaged key stay.
  EXPECT_EQ(*(*db)->Get(std::string(kDeadData) + "len"), std::nullopt);
  EXPECT_EQ(*(*db)->Get("i/0000000000000009"), std::nullopt);
  EXPECT_NE(*(*db)->Get(std::string(kLiveData) + "ckpt"), std::nullopt);
  EXPECT_NE(*(*db)->Get("i/not-a-data-id"), std::nullopt);
}

// A store holding session "s" with memory entries, in `dir`.
void WriteSessionWithMemory(const Engine* engine, const std::string& dir) {
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      SessionStore::Open(dir, engine, Env::Default());
  ASSERT_TRUE(store.ok()) << store.status();
  SessionOptions options;
  options.memory = engine->DefaultMemoryOptions();
  std::unique_ptr<Session> session = *Session::Create(engine, options);
  ASSERT_TRUE(session->StartDocument("d").ok());
  ASSERT_TRUE(session->AppendToDocument("d", RandomTokens(40, 97, 3)).ok());
  ASSERT_GT(session->memory_entries(), 0);
  absl::StatusOr<SessionRecords> records = (*store)->Create("s", session->options());
  ASSERT_TRUE(records.ok()) << records.status();
  const SessionChanges changes = *session->ChangesSince(records->cursor);
  ASSERT_TRUE((*store)->Write(&*records, changes, {}).ok());
}

TEST(SessionStoreTest, AnEntryRecordWhoseCountOverflowsItsSizeIsDataLoss) {
  const std::unique_ptr<Engine> engine =
      LoadEngine(WriteSmallModel("session_store_model", SmallModelConfig()));
  const std::string dir = ::testing::TempDir() + "/session_store_entries";
  std::filesystem::remove_all(dir);
  WriteSessionWithMemory(engine.get(), dir);
  {
    // The first entry record's count, raised by 2^(64 - v) where 2^v divides
    // the bytes per entry: the record's byte size for that count wraps to
    // exactly its real size, and a load then sized its rows by the count.
    absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(dir + "/db");
    ASSERT_TRUE(db.ok()) << db.status();
    std::string key, value;
    ASSERT_TRUE((*db)
                    ->Scan("d/",
                           [&](std::string_view k, std::string_view v) {
                             if (key.empty() && k.find("/ent/") != std::string_view::npos) {
                               key = std::string(k);
                               value = std::string(v);
                             }
                             return absl::OkStatus();
                           })
                    .ok());
    ASSERT_FALSE(key.empty());
    int64_t count;
    std::memcpy(&count, value.data() + 8, 8);
    const uint64_t entry_bytes = (value.size() - 16) / count;
    const int shift = 64 - std::countr_zero(entry_bytes);
    ASSERT_LE(shift, 62);
    count += int64_t{1} << shift;
    std::memcpy(value.data() + 8, &count, 8);
    rocksdb::WriteBatch batch;
    batch.Put(key, value);
    ASSERT_TRUE((*db)->Write(&batch).ok());
  }
  absl::StatusOr<std::unique_ptr<SessionStore>> store =
      SessionStore::Open(dir, engine.get(), Env::Default());
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<LoadedSession> loaded = (*store)->Load("s");
  ASSERT_TRUE(loaded.ok()) << loaded.status();  // entries are read when restored
  const absl::Status read = loaded->entries(
      0, [](int, int64_t, const float*, const float*, int64_t) { return absl::OkStatus(); });
  EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss) << read;
}

}  // namespace
}  // namespace fot
