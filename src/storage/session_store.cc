#include "src/storage/session_store.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace fot {
namespace {

constexpr char kFormat[] = "fotserve-store 1";
constexpr int64_t kNoEnd = std::numeric_limits<int64_t>::max();
// Entries per record when a whole memory is written at once (Import).
constexpr int64_t kImportEntriesPerRecord = 4096;

using Json = nlohmann::json;

// Fixed-width hex, so that keys sort as their numbers do.
std::string Hex(uint64_t n) { return absl::StrFormat("%016x", n); }
std::string DataPrefix(uint64_t data) { return absl::StrCat("d/", Hex(data), "/"); }
std::string TokenKey(uint64_t data, int64_t first) {
  return absl::StrCat(DataPrefix(data), "tok/", Hex(first));
}
std::string EntryKey(uint64_t data, int64_t first) {
  return absl::StrCat(DataPrefix(data), "ent/", Hex(first));
}
std::string DocumentKey(uint64_t data, int64_t id) {
  return absl::StrCat(DataPrefix(data), "doc/", Hex(id));
}
std::string SessionKey(const std::string& name) { return "n/" + name; }
std::string SnapshotKey(const std::string& name) { return "p/" + name; }
std::string SnapshotCacheKey(const std::string& name) { return "c/" + name; }

absl::StatusOr<Json> ParseJson(std::string_view text, const std::string& what) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat(what, " is not a JSON object"));
  }
  return json;
}

// nlohmann's typed reads throw on a wrong type; a bad record must be a
// DataLoss of its session alone.
template <typename T>
absl::StatusOr<T> Get(const Json& json, const char* name, const std::string& what) {
  try {
    return json.at(name).get<T>();
  } catch (const Json::exception&) {
    return absl::DataLossError(absl::StrCat(what, ": '", name, "' is missing or of a wrong type"));
  }
}

// A string field that may be missing or of another type in a damaged record
// ("" then): garbage collection reads every record and must not throw.
std::string StringOrEmpty(const Json& json, const char* name) {
  const auto field = json.find(name);
  return field != json.end() && field->is_string() ? field->get<std::string>() : "";
}

Json SegmentsJson(const std::vector<Segment>& segments) {
  Json out = Json::array();
  for (const Segment& s : segments) out.push_back({s.data, s.stream_end, s.entries_end});
  return out;
}

absl::StatusOr<std::vector<Segment>> SegmentsFromJson(const Json& json, const std::string& what) {
  std::vector<Segment> out;
  try {
    for (const Json& s : json) {
      out.push_back({s.at(0).get<uint64_t>(), s.at(1).get<int64_t>(), s.at(2).get<int64_t>()});
    }
  } catch (const Json::exception&) {
    return absl::DataLossError(absl::StrCat(what, ": bad segments"));
  }
  return out;
}

Json DocumentJson(const DocumentInfo& d, const DocumentState* ingest) {
  Json json = {{"id", d.id},
               {"name", d.name},
               {"first", d.first},
               {"tokens", d.tokens},
               {"deleted", d.deleted}};
  if (ingest != nullptr) {
    json["ingest"] = {{"text", ingest->text},
                      {"complete", ingest->complete},
                      {"offset", ingest->offset},
                      {"tokens", ingest->tokens}};
  }
  return json;
}

absl::Status DocumentFromJson(const Json& json, std::vector<DocumentInfo>* documents,
                              std::map<std::string, DocumentState>* ingest) {
  try {
    DocumentInfo d{json.at("id").get<int64_t>(), json.at("name").get<std::string>(),
                   json.at("first").get<int64_t>(), json.at("tokens").get<int64_t>(),
                   json.at("deleted").get<bool>()};
    if (json.contains("ingest")) {
      const Json& i = json.at("ingest");
      (*ingest)[d.name] = {i.at("text").get<bool>(), i.at("complete").get<bool>(),
                           i.at("offset").get<int64_t>(), i.at("tokens").get<int64_t>()};
    }
    documents->push_back(std::move(d));
  } catch (const Json::exception&) {
    return absl::DataLossError("a stored document record is damaged");
  }
  return absl::OkStatus();
}

// --- token and entry records -------------------------------------------------

constexpr size_t kProvenanceBytes = 8 + 8 + 4;

std::string EncodeTokens(const Provenance* p, size_t n) {
  std::string out(n * kProvenanceBytes, '\0');
  for (size_t i = 0; i < n; ++i) {
    char* at = out.data() + i * kProvenanceBytes;
    std::memcpy(at, &p[i].document, 8);
    std::memcpy(at + 8, &p[i].position, 8);
    std::memcpy(at + 16, &p[i].token, 4);
  }
  return out;
}

absl::Status DecodeTokens(std::string_view bytes, std::vector<Provenance>* out) {
  if (bytes.size() % kProvenanceBytes != 0) return absl::DataLossError("a token record is damaged");
  for (size_t at = 0; at < bytes.size(); at += kProvenanceBytes) {
    Provenance p;
    std::memcpy(&p.document, bytes.data() + at, 8);
    std::memcpy(&p.position, bytes.data() + at + 8, 8);
    std::memcpy(&p.token, bytes.data() + at + 16, 4);
    out->push_back(p);
  }
  return absl::OkStatus();
}

// How the entries of a session are encoded: keys as the store keeps them
// (fp16 codes exactly as float16; PQ reconstructions and f32 as float32),
// values in the store's dtype, so decoding and appending again reproduces
// the store.
struct EntryCodec {
  int layers = 0, kv_heads = 0, head_dim = 0;
  bool half_keys = false;
  StorageType values = StorageType::kFloat32;

  static EntryCodec For(const ModelConfig& config, const SessionOptions& options, int layers) {
    EntryCodec c;
    c.layers = layers;
    c.kv_heads = config.num_key_value_heads;
    c.head_dim = config.head_dim();
    const bool pq = options.memory.index_kind == IndexKind::kIvf && options.memory.ivf_pq;
    c.half_keys = options.memory.dtype != StorageType::kFloat32 && !pq;
    c.values = options.memory.dtype;
    return c;
  }
  int64_t Floats(int64_t count) const { return count * kv_heads * head_dim; }
  int64_t Bytes(int64_t count) const {
    const int key = half_keys ? 2 : 4, value = values == StorageType::kFloat32 ? 4 : 2;
    return 8 + 8 + layers * Floats(count) * (key + value);
  }
  // Whether a record of `bytes` bytes holds `count` entries from entry
  // `first` on. By division: both come from the record and may be anything
  // (Bytes(count) of a damaged count overflowed; found by fuzz/session_store).
  bool Fits(int64_t first, int64_t count, size_t bytes) const {
    if (first < 0 || count < 0 || count > std::numeric_limits<int64_t>::max() - first ||
        bytes < 16) {
      return false;
    }
    const auto entry = static_cast<uint64_t>(Bytes(1) - 16);  // every layer's and head's
    if (entry == 0) return count == 0 && bytes == 16;
    return (bytes - 16) % entry == 0 && (bytes - 16) / entry == static_cast<uint64_t>(count);
  }
};

void AppendRow(std::string* out, const float* x, int64_t n, bool half, StorageType type) {
  const size_t at = out->size();
  if (!half) {
    out->resize(at + n * 4);
    std::memcpy(out->data() + at, x, n * 4);
    return;
  }
  std::vector<uint16_t> codes(n);
  EncodeHalfRow(type, x, n, codes.data());
  out->resize(at + n * 2);
  std::memcpy(out->data() + at, codes.data(), n * 2);
}

const char* ReadRow(const char* in, int64_t n, bool half, StorageType type, float* x) {
  if (!half) {
    std::memcpy(x, in, n * 4);
    return in + n * 4;
  }
  std::vector<uint16_t> codes(n);
  std::memcpy(codes.data(), in, n * 2);
  DecodeHalfRow(type, codes.data(), n, x);
  return in + n * 2;
}

// Entries [offset, offset + count) of `changes` (relative to its first).
std::string EncodeEntries(const EntryCodec& c, const SessionChanges& changes, int64_t first,
                          int64_t offset, int64_t count) {
  std::string out;
  out.reserve(c.Bytes(count));
  out.append(reinterpret_cast<const char*>(&first), 8);
  out.append(reinterpret_cast<const char*>(&count), 8);
  const int64_t total = changes.end.entries - (first - offset);
  for (int l = 0; l < c.layers; ++l) {
    for (int h = 0; h < c.kv_heads; ++h) {
      const int64_t at = (h * total + offset) * c.head_dim;
      AppendRow(&out, changes.keys[l].data() + at, count * c.head_dim, c.half_keys,
                StorageType::kFloat16);
      AppendRow(&out, changes.values[l].data() + at, count * c.head_dim,
                c.values != StorageType::kFloat32, c.values);
    }
  }
  return out;
}

// Feeds the record's entries from id `from` on to `sink`.
absl::Status DecodeEntries(const EntryCodec& c, std::string_view bytes, int64_t from, int64_t end,
                           const EntrySink& sink) {
  int64_t first = 0, count = 0;
  if (bytes.size() < 16) return absl::DataLossError("an entry record is damaged");
  std::memcpy(&first, bytes.data(), 8);
  std::memcpy(&count, bytes.data() + 8, 8);
  if (!c.Fits(first, count, bytes.size())) {
    return absl::DataLossError("an entry record is damaged (its size does not fit its count)");
  }
  const int64_t skip = std::max<int64_t>(from - first, 0);
  const int64_t keep = std::min(first + count, end) - (first + skip);
  if (keep <= 0) return absl::OkStatus();
  const char* in = bytes.data() + 16;
  std::vector<float> keys(c.Floats(keep)), values(keys.size()), row(count * c.head_dim);
  for (int l = 0; l < c.layers; ++l) {
    for (int h = 0; h < c.kv_heads; ++h) {
      float* k = keys.data() + h * keep * c.head_dim;
      float* v = values.data() + h * keep * c.head_dim;
      in = ReadRow(in, count * c.head_dim, c.half_keys, StorageType::kFloat16, row.data());
      std::copy_n(row.begin() + skip * c.head_dim, keep * c.head_dim, k);
      in = ReadRow(in, count * c.head_dim, c.values != StorageType::kFloat32, c.values, row.data());
      std::copy_n(row.begin() + skip * c.head_dim, keep * c.head_dim, v);
    }
    FOT_RETURN_IF_ERROR(sink(l, first + skip, keys.data(), values.data(), keep));
  }
  return absl::OkStatus();
}

int MemoryLayerCount(const Engine& engine, const SessionOptions& options) {
  absl::StatusOr<ModelState> state = engine.NewState(MemoryOptions{}, options.attention);
  return state.ok() ? static_cast<int>(state->cache->memory_layers().size()) : 0;
}

// Adds everything in `changes` beyond `since` as records of `data`.
void AddChanges(const EntryCodec& codec, uint64_t data, const SessionCursor& since,
                const SessionChanges& changes, int64_t entries_per_record,
                rocksdb::WriteBatch* batch) {
  if (!changes.stream.empty()) {
    const std::string tokens = EncodeTokens(changes.stream.data(), changes.stream.size());
    batch->Put(TokenKey(data, since.stream), tokens);
  }
  const int64_t n = changes.end.entries - since.entries;
  for (int64_t offset = 0; offset < n; offset += entries_per_record) {
    const int64_t count = std::min(entries_per_record, n - offset);
    batch->Put(EntryKey(data, since.entries + offset),
               EncodeEntries(codec, changes, since.entries + offset, offset, count));
  }
  batch->Put(DataPrefix(data) + "len", Json{{"stream", changes.end.stream}}.dump());
  if (!changes.memory) return;  // an acknowledgement's write: the stream alone
  const Json progress = {{"entries", changes.end.entries}, {"committed", changes.committed}};
  batch->Put(DataPrefix(data) + "prog", progress.dump());
  if (!changes.cache_state.empty()) batch->Put(DataPrefix(data) + "cache", changes.cache_state);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SessionStore>> SessionStore::Open(
    const std::string& data_dir, const Engine* engine, Env* env,
    std::shared_ptr<rocksdb::FileSystem> file_system) {
  FOT_RETURN_IF_ERROR(env->CreateDirs(data_dir + "/index"));
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Database> db,
                       Database::Open(data_dir + "/db", std::move(file_system)));
  std::unique_ptr<SessionStore> store(
      new SessionStore(std::move(db), data_dir + "/index", engine, env));
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> next, store->db_->Get("next_data_id"));
  absl::MutexLock lock(&store->id_mu_);
  if (next.has_value()) {
    if (next->size() != 8) return absl::DataLossError("the data id counter is damaged");
    std::memcpy(&store->next_id_, next->data(), 8);
  }
  return store;
}

absl::StatusOr<uint64_t> SessionStore::NewDataId(rocksdb::WriteBatch* batch) {
  absl::MutexLock lock(&id_mu_);
  const uint64_t id = next_id_++;
  batch->Put("next_data_id", std::string(reinterpret_cast<const char*>(&next_id_), 8));
  batch->Put("i/" + Hex(id), "");
  return id;
}

absl::StatusOr<std::vector<std::string>> SessionStore::SessionNames() const {
  std::vector<std::string> names;
  FOT_RETURN_IF_ERROR(db_->Scan("n/", [&](std::string_view key, std::string_view) {
    names.emplace_back(key.substr(2));
    return absl::OkStatus();
  }));
  return names;
}

absl::StatusOr<std::vector<std::string>> SessionStore::SnapshotNames() const {
  std::vector<std::string> names;
  FOT_RETURN_IF_ERROR(db_->Scan("p/", [&](std::string_view key, std::string_view) {
    names.emplace_back(key.substr(2));
    return absl::OkStatus();
  }));
  return names;
}

bool SessionStore::HasSession(const std::string& name) const {
  absl::StatusOr<std::optional<std::string>> header = db_->Get(SessionKey(name));
  return !header.ok() || header->has_value();  // an unreadable header still holds the name
}

bool SessionStore::HasSnapshot(const std::string& name) const {
  absl::StatusOr<std::optional<std::string>> header = db_->Get(SnapshotKey(name));
  return header.ok() && header->has_value();
}

absl::StatusOr<SessionRecords> SessionStore::Create(const std::string& name,
                                                    const SessionOptions& options) {
  if (HasSession(name)) {
    return absl::AlreadyExistsError(absl::StrCat("session '", name, "' has stored records"));
  }
  rocksdb::WriteBatch batch;
  FOT_ASSIGN_OR_RETURN(const uint64_t data, NewDataId(&batch));
  const Json header = {{"format", kFormat},
                       {"data", data},
                       {"options", EncodeSessionOptions(options)},
                       {"base", Json::array()}};
  batch.Put(SessionKey(name), header.dump());
  batch.Put(DataPrefix(data) + "len", Json{{"stream", 0}}.dump());
  batch.Put(DataPrefix(data) + "prog", Json{{"entries", 0}, {"committed", 0}}.dump());
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  SessionRecords records;
  records.options = options;
  records.data = data;
  return records;
}

absl::Status SessionStore::Write(SessionRecords* records, const SessionChanges& changes,
                                 const std::map<std::string, DocumentState>& ingest) {
  const EntryCodec codec =
      EntryCodec::For(engine_->config(), records->options, static_cast<int>(changes.keys.size()));
  rocksdb::WriteBatch batch;
  // One record for what this write adds: a window or a few per chunk.
  AddChanges(codec, records->data, records->cursor, changes, kNoEnd, &batch);
  for (const DocumentInfo& d : changes.documents) {
    const auto state = ingest.find(d.name);
    const DocumentState* now = state == ingest.end() ? nullptr : &state->second;
    const auto old = records->ingest.find(d.name);
    const bool same_ingest =
        (now == nullptr && old == records->ingest.end()) ||
        (now != nullptr && old != records->ingest.end() && *now == old->second);
    const bool same_info = d.id < static_cast<int64_t>(records->documents.size()) &&
                           records->documents[d.id].tokens == d.tokens &&
                           records->documents[d.id].deleted == d.deleted;
    if (same_info && same_ingest) continue;
    batch.Put(DocumentKey(records->data, d.id), DocumentJson(d, now).dump());
  }
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  records->cursor = changes.end;
  records->documents = changes.documents;
  records->ingest = ingest;
  return absl::OkStatus();
}

absl::StatusOr<std::string> SessionStore::Checkpoint(uint64_t data, int64_t entries,
                                                     const Session& session) {
  const std::string name = absl::StrCat(Hex(data), "-", Hex(entries));
  const std::string dir = absl::StrCat(index_dir_, "/", name);
  {
    absl::MutexLock lock(&checkpoints_mu_);
    writing_.insert(name);
  }
  absl::Status written = env_->RemoveAll(dir);  // the remains of an interrupted one
  if (written.ok()) written = session.WriteCheckpoint(dir, *env_, entries);
  if (written.ok()) written = env_->SyncDir(index_dir_);
  if (written.ok()) {
    rocksdb::WriteBatch batch;
    batch.Put(DataPrefix(data) + "ckpt", Json{{"dir", name}, {"entries", entries}}.dump());
    written = db_->Write(&batch);
  }
  {
    absl::MutexLock lock(&checkpoints_mu_);
    writing_.erase(name);
  }
  if (!written.ok()) {
    env_->RemoveAll(dir).IgnoreError();  // the error to report is `written`
    return written;
  }
  FOT_RETURN_IF_ERROR(CollectGarbage());  // the previous checkpoint, unless a snapshot uses it
  return name;
}

absl::StatusOr<LoadedSession> SessionStore::Load(const std::string& name) const {
  return LoadData(SessionKey(name), absl::StrCat("session '", name, "'"));
}

absl::StatusOr<LoadedSession> SessionStore::LoadData(const std::string& header_key,
                                                     const std::string& what) const {
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> header_text, db_->Get(header_key));
  if (!header_text.has_value()) return absl::NotFoundError(absl::StrCat("no ", what));
  FOT_ASSIGN_OR_RETURN(const Json header, ParseJson(*header_text, what));
  FOT_ASSIGN_OR_RETURN(const std::string format, Get<std::string>(header, "format", what));
  if (format != kFormat) {
    return absl::FailedPreconditionError(absl::StrCat(what, " was stored in format '", format,
                                                      "', which this server does not read"));
  }
  LoadedSession loaded;
  SessionRecords& records = loaded.records;
  FOT_ASSIGN_OR_RETURN(records.data, Get<uint64_t>(header, "data", what));
  FOT_ASSIGN_OR_RETURN(const std::string options, Get<std::string>(header, "options", what));
  FOT_ASSIGN_OR_RETURN(records.options, DecodeSessionOptions(options, engine_->config()));
  FOT_ASSIGN_OR_RETURN(records.base, SegmentsFromJson(header.value("base", Json()), what));
  const std::string prefix = DataPrefix(records.data);

  FOT_ASSIGN_OR_RETURN(std::optional<std::string> progress_text, db_->Get(prefix + "prog"));
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> length_text, db_->Get(prefix + "len"));
  if (!progress_text.has_value() || !length_text.has_value()) {
    return absl::DataLossError(absl::StrCat(what, " has no progress records"));
  }
  FOT_ASSIGN_OR_RETURN(const Json progress, ParseJson(*progress_text, what));
  FOT_ASSIGN_OR_RETURN(const Json length, ParseJson(*length_text, what));
  FOT_ASSIGN_OR_RETURN(records.cursor.stream, Get<int64_t>(length, "stream", what));
  FOT_ASSIGN_OR_RETURN(records.cursor.entries, Get<int64_t>(progress, "entries", what));
  StoredSession& stored = loaded.stored;
  stored.options = records.options;
  FOT_ASSIGN_OR_RETURN(stored.committed, Get<int64_t>(progress, "committed", what));
  stored.entries = records.cursor.entries;

  FOT_RETURN_IF_ERROR(db_->Scan(prefix + "doc/", [&](std::string_view, std::string_view value) {
    FOT_ASSIGN_OR_RETURN(const Json doc, ParseJson(value, what));
    return DocumentFromJson(doc, &stored.documents, &loaded.ingest);
  }));
  for (size_t i = 0; i < stored.documents.size(); ++i) {
    if (stored.documents[i].id != static_cast<int64_t>(i)) {
      return absl::DataLossError(absl::StrCat(what, ": its documents are not numbered in order"));
    }
  }
  records.documents = stored.documents;
  records.ingest = loaded.ingest;
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> cache, db_->Get(prefix + "cache"));
  stored.cache_state = cache.value_or("");
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> checkpoint, db_->Get(prefix + "ckpt"));
  if (checkpoint.has_value()) {
    FOT_ASSIGN_OR_RETURN(const Json c, ParseJson(*checkpoint, what));
    FOT_ASSIGN_OR_RETURN(records.checkpoint, Get<std::string>(c, "dir", what));
    FOT_ASSIGN_OR_RETURN(records.checkpoint_entries, Get<int64_t>(c, "entries", what));
    stored.checkpoint_dir = absl::StrCat(index_dir_, "/", records.checkpoint);
  }

  // The stream: every segment's token records in order.
  std::vector<Segment> segments = records.base;
  segments.push_back({records.data, records.cursor.stream, records.cursor.entries});
  for (const Segment& segment : segments) {
    FOT_RETURN_IF_ERROR(
        db_->Scan(DataPrefix(segment.data) + "tok/", [&](std::string_view, std::string_view v) {
          if (static_cast<int64_t>(stored.stream.size()) >= segment.stream_end) {
            return absl::OkStatus();
          }
          FOT_RETURN_IF_ERROR(DecodeTokens(v, &stored.stream));
          stored.stream.resize(std::min<int64_t>(stored.stream.size(), segment.stream_end));
          return absl::OkStatus();
        }));
  }
  if (static_cast<int64_t>(stored.stream.size()) != records.cursor.stream) {
    return absl::DataLossError(absl::StrCat(what, " has ", stored.stream.size(),
                                            " stored stream tokens where its progress says ",
                                            records.cursor.stream));
  }
  const EntryCodec codec = EntryCodec::For(engine_->config(), records.options,
                                           MemoryLayerCount(*engine_, stored.options));
  const Database* db = db_.get();
  loaded.entries = [db, codec, segments](int64_t from, const EntrySink& sink) -> absl::Status {
    int64_t begin = 0;
    for (const Segment& segment : segments) {
      const int64_t start = std::max(from, begin);
      if (start < segment.entries_end) {
        FOT_RETURN_IF_ERROR(db->Scan(
            DataPrefix(segment.data) + "ent/", [&](std::string_view key, std::string_view value) {
              return DecodeEntries(codec, value, start, segment.entries_end, sink);
            }));
      }
      begin = segment.entries_end;
    }
    return absl::OkStatus();
  };
  return loaded;
}

absl::Status SessionStore::Delete(const std::string& name) {
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> header, db_->Get(SessionKey(name)));
  if (!header.has_value()) return absl::NotFoundError(absl::StrCat("no session '", name, "'"));
  rocksdb::WriteBatch batch;
  batch.Delete(SessionKey(name));
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  return CollectGarbage();
}

absl::Status SessionStore::SaveSnapshot(const std::string& snapshot, const SessionRecords& records,
                                        const SessionChanges& changes, const std::string& options,
                                        bool overwrite) {
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> existing, db_->Get(SnapshotKey(snapshot)));
  if (existing.has_value() && !overwrite) {
    return absl::AlreadyExistsError(
        absl::StrCat("snapshot '", snapshot, "' exists; set overwrite to replace it"));
  }
  std::vector<Segment> segments = records.base;
  segments.push_back({records.data, records.cursor.stream, records.cursor.entries});
  Json documents = Json::array();
  for (const DocumentInfo& d : records.documents) {
    const auto state = records.ingest.find(d.name);
    documents.push_back(DocumentJson(d, state == records.ingest.end() ? nullptr : &state->second));
  }
  const Json header = {{"format", kFormat},
                       {"options", options},
                       {"segments", SegmentsJson(segments)},
                       {"documents", documents},
                       {"stream", records.cursor.stream},
                       {"entries", records.cursor.entries},
                       {"committed", changes.committed},
                       {"checkpoint", records.checkpoint},
                       {"checkpoint_entries", records.checkpoint_entries}};
  rocksdb::WriteBatch batch;
  batch.Put(SnapshotKey(snapshot), header.dump());
  if (changes.cache_state.empty()) {
    batch.Delete(SnapshotCacheKey(snapshot));
  } else {
    batch.Put(SnapshotCacheKey(snapshot), changes.cache_state);
  }
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  return existing.has_value() ? CollectGarbage() : absl::OkStatus();
}

absl::StatusOr<LoadedSession> SessionStore::LoadSnapshot(const std::string& snapshot,
                                                         const std::string& name) {
  const std::string what = absl::StrCat("snapshot '", snapshot, "'");
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> text, db_->Get(SnapshotKey(snapshot)));
  if (!text.has_value()) return absl::NotFoundError(absl::StrCat("no ", what));
  if (HasSession(name)) {
    return absl::AlreadyExistsError(absl::StrCat("session '", name, "' has stored records"));
  }
  FOT_ASSIGN_OR_RETURN(const Json header, ParseJson(*text, what));
  FOT_ASSIGN_OR_RETURN(const std::string options, Get<std::string>(header, "options", what));
  FOT_ASSIGN_OR_RETURN(const std::vector<Segment> segments,
                       SegmentsFromJson(header.value("segments", Json()), what));
  FOT_ASSIGN_OR_RETURN(const std::string checkpoint, Get<std::string>(header, "checkpoint", what));
  FOT_ASSIGN_OR_RETURN(const int64_t checkpoint_entries,
                       Get<int64_t>(header, "checkpoint_entries", what));
  FOT_ASSIGN_OR_RETURN(std::optional<std::string> cache, db_->Get(SnapshotCacheKey(snapshot)));
  rocksdb::WriteBatch batch;
  FOT_ASSIGN_OR_RETURN(const uint64_t data, NewDataId(&batch));
  const Json session = {
      {"format", kFormat}, {"data", data}, {"options", options}, {"base", SegmentsJson(segments)}};
  batch.Put(SessionKey(name), session.dump());
  try {
    const Json progress = {{"entries", header.at("entries").get<int64_t>()},
                           {"committed", header.at("committed").get<int64_t>()}};
    batch.Put(DataPrefix(data) + "prog", progress.dump());
    batch.Put(DataPrefix(data) + "len",
              Json{{"stream", header.at("stream").get<int64_t>()}}.dump());
    for (const Json& d : header.at("documents")) {
      batch.Put(DocumentKey(data, d.at("id").get<int64_t>()), d.dump());
    }
  } catch (const Json::exception&) {
    return absl::DataLossError(absl::StrCat(what, " is damaged"));
  }
  if (cache.has_value()) batch.Put(DataPrefix(data) + "cache", *cache);
  if (!checkpoint.empty()) {
    batch.Put(DataPrefix(data) + "ckpt",
              Json{{"dir", checkpoint}, {"entries", checkpoint_entries}}.dump());
  }
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  return Load(name);
}

int64_t SessionStore::DiskBytes() const {
  int64_t total = db_->DiskBytes();
  std::error_code error;
  for (std::filesystem::recursive_directory_iterator it(index_dir_, error), end;
       !error && it != end; it.increment(error)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) {
      const auto size = it->file_size(size_error);
      if (!size_error) total += static_cast<int64_t>(size);
    }
  }
  return total;
}

int64_t SessionStore::DataBytes(const SessionRecords& records) const {
  const EntryCodec codec = EntryCodec::For(engine_->config(), records.options,
                                           MemoryLayerCount(*engine_, records.options));
  return records.cursor.stream * static_cast<int64_t>(kProvenanceBytes) +
         codec.Bytes(records.cursor.entries);
}

absl::Status SessionStore::CollectGarbage() {
  // Held throughout: a checkpoint is either still in writing_ or already
  // named by its record when the records are read.
  absl::MutexLock gc(&checkpoints_mu_);
  // What sessions and snapshots reach: data ids up to an end (kNoEnd for a
  // session's own data), and checkpoint directories.
  std::map<uint64_t, Segment> reach;
  std::set<std::string> checkpoints;
  auto reach_segments = [&](const std::vector<Segment>& segments) {
    for (const Segment& s : segments) {
      Segment& r = reach.try_emplace(s.data, Segment{s.data, 0, 0}).first->second;
      r.stream_end = std::max(r.stream_end, s.stream_end);
      r.entries_end = std::max(r.entries_end, s.entries_end);
    }
  };
  std::vector<uint64_t> sessions_data;
  FOT_RETURN_IF_ERROR(db_->Scan("n/", [&](std::string_view, std::string_view value) {
    const Json header = Json::parse(value, nullptr, false);
    if (!header.is_object()) return absl::OkStatus();  // reported when it is loaded
    absl::StatusOr<std::vector<Segment>> base =
        SegmentsFromJson(header.value("base", Json()), "a session");
    absl::StatusOr<uint64_t> data = Get<uint64_t>(header, "data", "a session");
    if (!base.ok() || !data.ok()) return absl::OkStatus();
    reach_segments(*base);
    reach_segments({{*data, kNoEnd, kNoEnd}});
    sessions_data.push_back(*data);
    return absl::OkStatus();
  }));
  for (uint64_t data : sessions_data) {  // (a scan's visitor must not read the database)
    absl::StatusOr<std::optional<std::string>> c = db_->Get(DataPrefix(data) + "ckpt");
    if (c.ok() && c->has_value()) {
      const Json checkpoint = Json::parse(**c, nullptr, false);
      if (checkpoint.is_object()) checkpoints.insert(StringOrEmpty(checkpoint, "dir"));
    }
  }
  FOT_RETURN_IF_ERROR(db_->Scan("p/", [&](std::string_view, std::string_view value) {
    const Json header = Json::parse(value, nullptr, false);
    if (!header.is_object()) return absl::OkStatus();
    absl::StatusOr<std::vector<Segment>> segments =
        SegmentsFromJson(header.value("segments", Json()), "a snapshot");
    if (segments.ok()) reach_segments(*segments);
    checkpoints.insert(StringOrEmpty(header, "checkpoint"));
    return absl::OkStatus();
  }));
  return RemoveUnreached(reach, checkpoints);
}

absl::Status SessionStore::RemoveUnreached(const std::map<uint64_t, Segment>& reach,
                                           const std::set<std::string>& checkpoints) {
  std::vector<uint64_t> ids;
  FOT_RETURN_IF_ERROR(db_->Scan("i/", [&](std::string_view key, std::string_view) {
    const std::string_view hex = key.substr(2);
    uint64_t id;  // a damaged key that names no id is left alone
    const auto [end, error] = std::from_chars(hex.data(), hex.data() + hex.size(), id, 16);
    if (error == std::errc() && end == hex.data() + hex.size()) ids.push_back(id);
    return absl::OkStatus();
  }));
  rocksdb::WriteBatch batch;
  for (uint64_t id : ids) {
    const std::string prefix = DataPrefix(id);
    const std::string after = prefix.substr(0, prefix.size() - 1) + "0";  // '0' follows '/'
    const auto r = reach.find(id);
    if (r == reach.end()) {
      batch.DeleteRange(prefix, after);
      batch.Delete("i/" + Hex(id));
      continue;
    }
    if (r->second.stream_end == kNoEnd) continue;  // a live session's own data
    // Only snapshots reach it, up to their cuts: the rest of its records go.
    batch.DeleteRange(TokenKey(id, r->second.stream_end), prefix + "tok0");
    batch.DeleteRange(EntryKey(id, r->second.entries_end), prefix + "ent0");
    batch.DeleteRange(prefix + "doc/", prefix + "doc0");
    for (const char* key : {"len", "prog", "cache", "ckpt"}) batch.Delete(prefix + key);
  }
  if (batch.Count() > 0) FOT_RETURN_IF_ERROR(db_->Write(&batch));
  FOT_ASSIGN_OR_RETURN(const std::vector<std::string> dirs, env_->ListDir(index_dir_));
  for (const std::string& dir : dirs) {
    if (checkpoints.count(dir) > 0 || writing_.count(dir) > 0) continue;
    FOT_RETURN_IF_ERROR(env_->RemoveAll(index_dir_ + "/" + dir));
  }
  return absl::OkStatus();
}

absl::Status SessionStore::Import(const std::string& name, const Session& session,
                                  const std::map<std::string, DocumentState>& ingest,
                                  bool as_snapshot) {
  FOT_ASSIGN_OR_RETURN(const SessionChanges all, session.ChangesSince({}));
  const EntryCodec codec =
      EntryCodec::For(engine_->config(), session.options(), static_cast<int>(all.keys.size()));
  rocksdb::WriteBatch batch;
  FOT_ASSIGN_OR_RETURN(const uint64_t data, NewDataId(&batch));
  AddChanges(codec, data, {}, all, kImportEntriesPerRecord, &batch);
  for (const DocumentInfo& d : all.documents) {
    const auto state = ingest.find(d.name);
    batch.Put(DocumentKey(data, d.id),
              DocumentJson(d, state == ingest.end() ? nullptr : &state->second).dump());
  }
  const std::string options = EncodeSessionOptions(session.options());
  if (!as_snapshot) {
    const Json header = {
        {"format", kFormat}, {"data", data}, {"options", options}, {"base", Json::array()}};
    batch.Put(SessionKey(name), header.dump());
    return db_->Write(&batch);
  }
  FOT_RETURN_IF_ERROR(db_->Write(&batch));
  SessionRecords records;
  records.options = session.options();
  records.data = data;
  records.cursor = all.end;
  records.documents = all.documents;
  records.ingest = ingest;
  return SaveSnapshot(name, records, all, options, /*overwrite=*/true);
}

}  // namespace fot
