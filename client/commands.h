// fotctl's commands. Each takes the connection, its arguments and options
// (filled from flags by fotctl_main.cc), prints its result to stdout (a
// human-readable table, or one JSON document with Output::json) and returns
// a Status whose message is the one error line fotctl prints.
//
// Thread safety: one command runs at a time, from main.
#ifndef FOTSERVE_CLIENT_COMMANDS_H_
#define FOTSERVE_CLIENT_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/connection.h"

namespace fot::client {

struct Output {
  bool json = false;  // one JSON document on stdout instead of tables
};

// --- fotctl info, fotctl sessions ... (session_commands.cc) -----------------

absl::Status ServerInfo(const Connection& c, const Output& out);

struct CreateOptions {
  std::string retrieval;     // "dense" | "knn:K"; empty: the server's default
  std::string index;         // "flat" | "hnsw[:...]" | "ivf[:...]"; empty: default
  std::string memory_dtype;  // "f32" | "f16" | "bf16"; empty: default
  int last_context_length = 0;
  std::string attention;  // "fot" | "lambda"; empty: the server's default (fot)
  // lambda only (the server refuses them for fot sessions):
  std::optional<int> n_global;     // sink tokens; unset: the server's default (4)
  int local_window = 0;            // L; 0: the model's window
  std::string memory_positioning;  // "as_first" | "fixed_distance" | "none"; empty: default
  std::string memory_layers;       // "3,6" | "none"; empty: the model's memory layers
};
// One line for a session's attention: "fot", or e.g.
// "lambda n_global=4 L=512 memory=as_first layers=3,6".
std::string AttentionSummary(const fot::v1::SessionOptions& options);
absl::Status CreateSession(const Connection& c, const Output& out, const std::string& name,
                           const CreateOptions& options);
absl::Status ListSessions(const Connection& c, const Output& out);
absl::Status ShowSession(const Connection& c, const Output& out, const std::string& name);
absl::Status DeleteSession(const Connection& c, const Output& out, const std::string& name);

// --- fotctl ingest (ingest_command.cc) --------------------------------------

struct IngestOptions {
  std::string doc_id;      // document id for stdin (or a single file); empty: file name
  bool resume = false;     // continue documents from where the server has them
  bool keep_open = false;  // leave the documents open (append more later with resume)
  int64_t chunk_bytes = 64 << 10;
  bool progress = true;  // draw the progress bar on stderr
};
// `inputs`: file paths, or "-" for stdin.
absl::Status Ingest(const Connection& c, const Output& out, const std::string& session,
                    const std::vector<std::string>& inputs, const IngestOptions& options);

// --- fotctl ask, fotctl score (query_commands.cc) ---------------------------

struct AskOptions {
  int max_tokens = 0;  // 0: the server's default
  float temperature = 0;
  float top_p = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::vector<std::string> documents;
  std::string retrieval;
  bool keep_turn = false;
  bool ignore_eos = false;
  bool trace = false;
  int trace_top = 3;  // memory entries shown per layer and generated token
};
absl::Status Ask(const Connection& c, const Output& out, const std::string& session,
                 const std::string& question, const AskOptions& options);

absl::Status Score(const Connection& c, const Output& out, const std::string& session,
                   const std::string& context, const std::string& continuation,
                   const std::string& retrieval);

// --- fotctl memory ... (memory_commands.cc) ----------------------------------

absl::Status MemoryStats(const Connection& c, const Output& out, const std::string& session);
// Entries [offset, offset + limit) of memory layer `layer` (unset: the first).
absl::Status MemoryList(const Connection& c, const Output& out, const std::string& session,
                        std::optional<int> layer, int64_t offset, int64_t limit);
absl::Status MemoryShow(const Connection& c, const Output& out, const std::string& session,
                        std::optional<int> layer, int64_t entry, int radius);
absl::Status MemorySearch(const Connection& c, const Output& out, const std::string& session,
                          const std::string& text, int top, const std::string& retrieval);
absl::Status MemoryDeleteDocument(const Connection& c, const Output& out,
                                  const std::string& session, const std::string& document);
// Writes snapshot `snapshot` of `session` in the server's data directory.
absl::Status MemorySave(const Connection& c, const Output& out, const std::string& session,
                        const std::string& snapshot, bool overwrite);
// Makes live session `session` from snapshot `snapshot`.
absl::Status MemoryLoad(const Connection& c, const Output& out, const std::string& session,
                        const std::string& snapshot);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_COMMANDS_H_
