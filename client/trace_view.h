// Human-readable views of what memory layers retrieved (Generate's trace and
// SearchMemory): per layer, the few entries with the largest attention share
// across its heads, each shown with its document, position and the text
// around it ("…the key is[▁blue]berry…"), fetched once per entry with
// EntryContext.
//
// Thread safety: none; used by one thread.
#ifndef FOTSERVE_CLIENT_TRACE_VIEW_H_
#define FOTSERVE_CLIENT_TRACE_VIEW_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "client/connection.h"
#include "client/table.h"
#include "proto/fot.pb.h"

namespace fot::client {

struct TopEntry {
  int layer;
  int head;
  fot::v1::RetrievedEntry retrieved;
};

// The `n` entries of `layer` with the largest attention share over all its
// heads, best first; an entry retrieved by several heads appears once, with
// its best head.
std::vector<TopEntry> TopEntries(const fot::v1::LayerRetrieval& layer, int n);

// "41.0%", or "<0.1%" below a thousandth.
std::string Percent(float share);

class EntryContextCache {
 public:
  // `radius`: token positions shown either side of an entry.
  EntryContextCache(const Connection* connection, std::string session, int radius);

  // "…text before[entry]text after…" for `entry` of memory layer `layer`; the
  // token text alone for entries the server cannot place (the query's own
  // tokens, or an error).
  std::string Snippet(int layer, const fot::v1::MemoryEntry& entry);

 private:
  const Connection* connection_;  // not owned
  std::string session_;
  int radius_;
  std::map<std::pair<int, int64_t>, std::string> cache_;
};

// Adds one table row per entry: layer, head, document, position, context,
// share; `lead` are the cells before them on the first row (blank after).
void AddTraceRows(Table& table, std::vector<std::string> lead, const std::vector<TopEntry>& entries,
                  EntryContextCache& contexts);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_TRACE_VIEW_H_
