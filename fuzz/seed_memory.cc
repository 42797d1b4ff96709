// Seeds of the memory, migration and storage harnesses (seed_writers.h).
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "fuzz/fuzz_models.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_writers.h"
#include "fuzz/store_files.h"
#include "memory/kv_store.h"
#include "rocksdb/env.h"
#include "src/engine/session.h"
#include "src/storage/database.h"
#include "src/storage/session_store.h"

namespace fot::fuzz {
namespace {

void CheckOk(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Fail(__FILE__, __LINE__, what + ": " + status.ToString());
}

template <typename T>
T ValueOrDie(absl::StatusOr<T> value, const std::string& what) {
  CheckOk(value.status(), what);
  return *std::move(value);
}

// --- kv_store ---------------------------------------------------------------------

struct StoreSeed {
  const char* name;
  const char* spec;
  int head_dim;
  int64_t entries;
  bool delete_document;  // tombstones
  bool large_keys_last;  // the last keys beyond the norm bound: overflow ids
};

// `n` keys or values of `d` floats, deterministic; `scale` stretches them.
std::vector<float> Rows(int64_t n, int d, float phase, float scale) {
  std::vector<float> rows(n * d);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = scale * std::sin(0.37f * i + phase);
  return rows;
}

std::unique_ptr<KvStore> BuildStore(const StoreSeed& seed) {
  MemoryOptions options;
  CheckOk(ParseIndexSpec(seed.spec, &options), seed.spec);
  auto store = ValueOrDie(KvStore::Create(seed.head_dim, options), seed.spec);
  const int64_t base = seed.large_keys_last ? seed.entries - 8 : seed.entries;
  std::vector<Provenance> provenance(seed.entries);
  for (int64_t i = 0; i < seed.entries; ++i)
    provenance[i] = {i / 10, i % 10, static_cast<int32_t>(i % 97)};
  const int d = seed.head_dim;
  const std::vector<float> keys = Rows(base, d, 0.1f, 1.0f), values = Rows(base, d, 0.7f, 1.0f);
  CheckOk(store->Append(keys.data(), d, values.data(), d, provenance.data(), base), seed.name);
  if (base < seed.entries) {
    const std::vector<float> big = Rows(8, d, 0.3f, 4.0f);
    CheckOk(store->Append(big.data(), d, big.data(), d, provenance.data() + base, 8), seed.name);
  }
  if (seed.delete_document) CheckOk(store->DeleteDocument(1), seed.name);
  return store;
}

// A saved store as kv_store_fuzzer's parts.
std::string StoreInput(const KvStore& store) {
  const std::string dir = FreshDir("seed_store") + "/store";
  CheckOk(store.Save(dir), "saving a seed store");
  std::vector<std::string> parts;
  for (const char* file : kStoreFiles) {
    const std::string content = ReadFileOrDie(dir + "/" + file);
    parts.push_back(std::string(file) == "MANIFEST" ? StarManifest(content) : content);
  }
  return JoinParts(parts);
}

// --- data directories of the earlier layout
// ------------------------------------------------------------------

std::vector<int> Tokens(int n, int seed) {
  std::vector<int> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (i * 37 + seed * 11) % SmallConfig().vocab_size;
  return ids;
}

SessionOptions Options(const std::string& index, bool lambda) {
  SessionOptions options;
  options.memory = SmallEngine().DefaultMemoryOptions();
  CheckOk(ParseIndexSpec(index, &options.memory), index);
  if (lambda) {
    AttentionSpec spec;
    spec.mode = "lambda";
    spec.n_global = 2;
    spec.local_window = 8;
    options.attention = ValueOrDie(ApplyAttentionSpec(spec, {}, SmallConfig()), "lambda");
  }
  return options;
}

// A session with two documents (the first deleted when asked) and a tail.
std::unique_ptr<Session> MakeSession(const SessionOptions& options, bool delete_first) {
  auto session = ValueOrDie(Session::Create(&SmallEngine(), options), "a seed session");
  for (const char* doc : {"first", "second"}) {
    ValueOrDie(session->StartDocument(doc), doc);
    ValueOrDie(session->AppendToDocument(doc, Tokens(doc[0] == 'f' ? 24 : 21, doc[0])), doc);
  }
  if (delete_first) CheckOk(session->DeleteDocument("first"), "deleting a document");
  return session;
}

std::string SavedSession(const Session& session, const std::string& prefix) {
  const std::string dir = FreshDir("seed_session") + "/saved";
  CheckOk(session.Save(dir), "saving a seed session");
  return JoinParts(TreeParts(dir, prefix));
}

std::string IngestJson(const Session& session) {
  std::string documents;
  for (const DocumentInfo& d : session.Documents()) {
    if (!documents.empty()) documents += ",";
    documents +=
        absl::StrFormat(R"("%s":[{"text":false,"complete":false,"offset":%d,"tokens":%d}])", d.name,
                        d.tokens, d.tokens);
  }
  return R"({"format":"fotserve-ingest 1","documents":{)" + documents + "}}";
}

// A data directory of the earlier layout holding `sessions`, each under its
// root (sessions/NAME/ or snapshots/NAME/): state/ as Session::Save wrote it,
// and ingest.json.
std::string OldDataDirectory(const std::vector<std::pair<std::string, const Session*>>& sessions) {
  std::vector<std::string> parts;
  for (const auto& [root, session] : sessions) {
    const std::string saved = SavedSession(*session, root + "state/");
    for (std::string_view part : SplitParts(saved)) parts.emplace_back(part);
    parts.push_back(TreePart(root + "ingest.json", IngestJson(*session)));
  }
  return JoinParts(parts);
}

// --- storage records --------------------------------------------------------------------

// Records of a store holding `session` as session `name` (and its snapshot),
// read back from the database, plus a memory checkpoint's files.
std::vector<std::string> StoreRecords(const Session& session, bool snapshot, bool checkpoint) {
  const std::string dir = FreshDir("seed_records");
  const std::unique_ptr<rocksdb::Env> memory(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  std::vector<std::string> parts;
  {
    auto store = ValueOrDie(
        SessionStore::Open(dir, &SmallEngine(), Env::Default(), memory->GetFileSystem()), "store");
    SessionRecords records = ValueOrDie(store->Create("s", session.options()), "Create");
    const SessionChanges changes = ValueOrDie(session.ChangesSince(records.cursor), "changes");
    std::map<std::string, DocumentState> ingest;
    for (const DocumentInfo& d : session.Documents())
      ingest[d.name] = {false, false, d.tokens, d.tokens};
    CheckOk(store->Write(&records, changes, ingest), "Write");
    if (snapshot) {
      CheckOk(store->SaveSnapshot("snap", records, changes, EncodeSessionOptions(session.options()),
                                  false),
              "SaveSnapshot");
    }
    if (checkpoint) {
      // What SessionStore::Checkpoint writes: the memory, and a record naming it.
      const std::string name = absl::StrFormat("%016x-%016x", records.data, records.cursor.entries);
      CheckOk(
          session.WriteCheckpoint(dir + "/index/" + name, *Env::Default(), records.cursor.entries),
          "WriteCheckpoint");
      parts.push_back(absl::StrFormat("d/%016x/ckpt\n{\"dir\":\"%s\",\"entries\":%d}", records.data,
                                      name, records.cursor.entries));
      for (std::string& part : TreeParts(dir + "/index", "index/"))
        parts.push_back(std::move(part));
    }
  }
  auto db = ValueOrDie(Database::Open(dir + "/db", memory->GetFileSystem()), "db");
  CheckOk(db->Scan("",
                   [&](std::string_view key, std::string_view value) {
                     parts.insert(parts.begin(), std::string(key) + "\n" + std::string(value));
                     return absl::OkStatus();
                   }),
          "Scan");
  return parts;
}

}  // namespace

void WriteKvStoreSeeds(const std::string& dir) {
  const StoreSeed seeds[] = {
      {"flat_f32", "flat:dtype=f32", 8, 40, false, false},
      {"flat_f16_deleted", "flat:dtype=f16", 8, 40, true, false},
      {"flat_bf16", "flat:dtype=bf16", 4, 20, false, false},
      {"hnsw_unbuilt", "hnsw:m=4", 8, 16, false, false},
      {"hnsw_built", "hnsw:m=4,ef_construction=16,ef_search=16", 4, 1030, true, true},
      {"ivf_built", "ivf:nlist=2,train_size=80,dtype=f32", 8, 100, true, true},
      {"ivf_f16_built", "ivf:nlist=2,train_size=78,nprobe=1", 8, 90, false, true},
      {"ivf_auto_unbuilt", "ivf", 8, 30, false, false},
      {"ivf_pq_unbuilt", "ivf:nlist=2,pq_m=2", 8, 12, false, false},
      {"empty", "flat", 8, 0, false, false},
  };
  for (const StoreSeed& seed : seeds) WriteSeed(dir, seed.name, StoreInput(*BuildStore(seed)));
}

void WriteMigrationSeeds(const std::string& dir) {
  const std::unique_ptr<Session> fot = MakeSession(Options("flat", false), false);
  WriteSeed(dir, "fot", OldDataDirectory({{"sessions/old/", fot.get()}}));
  WriteSeed(dir, "fot_deleted_f32",
            OldDataDirectory(
                {{"sessions/old/", MakeSession(Options("flat:dtype=f32", false), true).get()}}));
  WriteSeed(dir, "lambda",
            OldDataDirectory({{"sessions/old/", MakeSession(Options("flat", true), false).get()}}));
  WriteSeed(
      dir, "ivf",
      OldDataDirectory({{"sessions/old/",
                         MakeSession(Options("ivf:nlist=2,train_size=80", false), false).get()}}));
  WriteSeed(dir, "session_and_snapshot",
            OldDataDirectory({{"sessions/old/", fot.get()}, {"snapshots/snap/", fot.get()}}));
}

void WriteSessionStoreSeeds(const std::string& dir) {
  const std::unique_ptr<Session> fot = MakeSession(Options("flat", false), true);
  WriteSeed(dir, "fot", JoinParts(StoreRecords(*fot, false, false)));
  WriteSeed(dir, "fot_snapshot_checkpoint", JoinParts(StoreRecords(*fot, true, true)));
  const std::unique_ptr<Session> lambda = MakeSession(Options("flat:dtype=f32", true), false);
  WriteSeed(dir, "lambda_snapshot", JoinParts(StoreRecords(*lambda, true, false)));
}

}  // namespace fot::fuzz
