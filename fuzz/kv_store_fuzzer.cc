// Fuzzes KvStore::Load (memory/kv_store_io.cc): one memory store directory
// of a session's memory or checkpoint, FAISS index included.
//
// Input: the store's files as parts, in store_files.h's order (MANIFEST,
// index.faiss, values.bin, provenance.bin, deleted.bin, overflow.bin); "*"
// sizes and checksums in the MANIFEST are filled in (store_files.h).
//
// Checks: a store that loads answers every reader within its size, searches
// return live ids best first, and it takes an append, a delete and a save
// that loads back as the same store.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/store_files.h"
#include "memory/kv_store.h"

namespace fot::fuzz {
namespace {

// Stores larger than this are loaded but not exercised: the checks' own
// buffers would be the allocation, not the store's.
constexpr int64_t kMaxCheckedFloats = 1 << 20;

bool Small(const KvStore& store) {
  return store.head_dim() <= 4096 &&
         (store.size() + 4) * static_cast<int64_t>(store.head_dim()) <= kMaxCheckedFloats;
}

void CheckReaders(const KvStore& store) {
  const int64_t n = store.size(), d = store.head_dim();
  std::vector<float> rows(std::max<int64_t>(n * d, 1));
  FOT_FUZZ_CHECK(store.ReadKeys(0, n, rows.data()).ok(), "ReadKeys of [0, size) failed");
  FOT_FUZZ_CHECK(store.ReadValues(0, n, rows.data()).ok(), "ReadValues of [0, size) failed");
  std::vector<Provenance> provenance(std::max<int64_t>(n, 1));
  FOT_FUZZ_CHECK(store.ReadProvenance(0, n, provenance.data()).ok(), "ReadProvenance failed");
  FOT_FUZZ_CHECK(!store.ReadKeys(0, n + 1, rows.data()).ok(), "ReadKeys beyond size succeeded");
  int64_t live = 0;
  for (int64_t id = 0; id < n; ++id) {
    if (store.is_deleted(id)) continue;
    ++live;
    FOT_FUZZ_CHECK(store.provenance(id) == provenance[id],
                   "provenance() differs from ReadProvenance");
  }
  FOT_FUZZ_CHECK(live == store.live_size(), "live_size disagrees with is_deleted");
  FOT_FUZZ_CHECK(store.is_deleted(-1) && store.is_deleted(n), "ids outside the store are live");
  FOT_FUZZ_CHECK(store.bytes() >= 0, "negative bytes");
}

// Ids live and in range, scores best first; their values gather.
void CheckResults(const KvStore& store, const std::vector<int64_t>& ids,
                  const std::vector<float>& scores, int k) {
  for (size_t row = 0; row * k < ids.size(); ++row) {
    for (int j = 0; j < k; ++j) {
      const int64_t id = ids[row * k + j];
      FOT_FUZZ_CHECK(id >= -1 && id < store.size(), "search returned an id outside the store");
      FOT_FUZZ_CHECK(id == -1 || !store.is_deleted(id), "search returned a deleted entry");
      if (j > 0 && id != -1 && !std::isnan(scores[row * k + j])) {
        FOT_FUZZ_CHECK(!(scores[row * k + j] > scores[row * k + j - 1]), "scores not best first");
      }
    }
  }
  std::vector<float> values(ids.size() * store.head_dim());
  FOT_FUZZ_CHECK(store.GatherValues(ids.data(), ids.size(), values.data()).ok(),
                 "GatherValues of search results failed");
}

void CheckSearch(const KvStore& store, const SearchFilter* filter) {
  constexpr int kQueries = 2, kTop = 5;
  const int d = store.head_dim();
  std::vector<float> queries(kQueries * d);
  for (size_t i = 0; i < queries.size(); ++i) queries[i] = std::sin(0.7f * i + 0.3f);
  std::vector<int64_t> ids(kQueries * kTop);
  std::vector<float> scores(ids.size());
  const absl::Status searched =
      store.Search(queries.data(), kQueries, d, kTop, filter, ids.data(), scores.data());
  FOT_FUZZ_CHECK(searched.ok(), "search of a loaded store failed: " + searched.ToString());
  CheckResults(store, ids, scores, kTop);
}

void CheckSearches(const KvStore& store) {
  CheckSearch(store, nullptr);
  SearchFilter exact;
  exact.exact = true;
  CheckSearch(store, &exact);
  const std::vector<int64_t> documents = store.Documents();
  if (documents.empty()) return;
  SearchFilter one;
  one.documents = {documents.front()};
  CheckSearch(store, &one);
}

// The writers on a loaded store, then a save that must load back.
void CheckWriters(KvStore& store, const std::string& dir) {
  const int d = store.head_dim();
  std::vector<float> key(d, 0.25f), value(d, -0.5f);
  const Provenance provenance{7, 0, 1};
  const int64_t before = store.size();
  const absl::Status appended = store.Append(key.data(), d, value.data(), d, &provenance, 1);
  FOT_FUZZ_CHECK(appended.ok(), "Append to a loaded store failed: " + appended.ToString());
  FOT_FUZZ_CHECK(store.size() == before + 1, "Append did not add one entry");
  FOT_FUZZ_CHECK(store.DeleteDocument(7).ok(), "DeleteDocument of the appended entry failed");
  const absl::Status saved = store.Save(dir + "/saved");
  FOT_FUZZ_CHECK(saved.ok(), "Save of a loaded store failed: " + saved.ToString());
  absl::StatusOr<std::unique_ptr<KvStore>> again = KvStore::Load(dir + "/saved");
  FOT_FUZZ_CHECK(again.ok(), "a saved store does not load: " + again.status().ToString());
  FOT_FUZZ_CHECK((*again)->size() == store.size() && (*again)->live_size() == store.live_size() &&
                     (*again)->options() == store.options(),
                 "Save/Load changed the store");
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot;
  const std::string dir = fuzz::FreshDir("kv_store");
  fuzz::WriteStore(dir + "/store", fuzz::SplitParts(fuzz::AsText(data, size)));
  absl::StatusOr<std::unique_ptr<KvStore>> store = KvStore::Load(dir + "/store");
  if (!store.ok() || !fuzz::Small(**store)) return 0;
  fuzz::CheckReaders(**store);
  fuzz::CheckSearches(**store);
  fuzz::CheckWriters(**store, dir);
  return 0;
}
