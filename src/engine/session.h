// A session: one memory plus its pending, not yet processed tail of tokens
// (DESIGN.md §2). Documents stream in; every window of W tokens, aligned from
// the session's first token, is processed and moved to memory once at least
// L − 1 tokens follow it, because a later question of any length must see
// exactly the window split of a one-shot call. A query runs the pending tail
// plus its question through the same split, reading the session's memory and
// writing its own windows to a private overlay that is dropped at the end, so
// queries never change the session.
//
// The invariant: for any chunking of the ingested documents and any question,
// a query's logits and greedy tokens equal those of one Engine::Prefill over
// all documents' tokens followed by the question (then Engine::Append per
// generated token).
//
// Under lambda attention (SessionOptions::attention) there are no windows:
// tokens leave the local branch one by one into memory, and Engine::Prefill
// runs a stream in blocks of L = local_window queries from the call's first
// token. A session commits the stream in the same blocks, aligned from its
// first token: a block of L tokens is run into the session's state (sinks,
// ring and memory) as soon as one more token follows it, so the pending tail
// of a non-empty stream holds 1 to L tokens. A query continues a private copy
// of the sinks and ring (Engine::NewOverlayState) with the tail and its
// question, in blocks of L from the same aligned start as the one-shot call:
// the same arithmetic in the same order, so the invariant holds exactly.
//
// Thread safety: all methods may be called from any thread. Queries (Generate,
// Score, Search, inspection) share the session; commits, DeleteDocument and
// keeping a turn take it exclusively, so a query sees the session as it was
// when it started. Appending tokens without committing them (what an ingest
// acknowledges) takes only the stream's own lock: it waits neither for a
// commit nor for a query in progress.
#ifndef FOTSERVE_SRC_ENGINE_SESSION_H_
#define FOTSERVE_SRC_ENGINE_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "base/env.h"
#include "src/engine/engine.h"
#include "src/engine/memory_inspection.h"
#include "src/engine/sampler.h"

namespace fot {

struct SessionOptions {
  MemoryOptions memory;         // index kind and storage of every memory layer
  Retrieval retrieval;          // default retrieval of queries
  int last_context_length = 0;  // fot's L; 0: the model's last_context_length
  // fot (the default) or lambda with its options; Session::Create resolves it
  // for the model (options() holds every default filled in).
  AttentionOptions attention;
};

struct DocumentInfo {
  int64_t id;        // session-local number, in ingest order (provenance.document)
  std::string name;  // the client's document id
  int64_t first;     // stream position of its first token
  int64_t tokens;    // tokens received so far
  bool deleted;
};

struct IngestProgress {
  int64_t document_tokens;  // tokens of this document received so far
  int64_t stream_tokens;    // tokens of the whole session
  // Stream tokens run into the session's state: under fot, those whose
  // windows are in memory; under lambda, the blocks of L in the sinks, ring
  // and memory.
  int64_t committed_tokens;
};

// One generated token and, when traced, what it retrieved.
struct GeneratedToken {
  int token;
  std::vector<AttentionTrace> traces;  // [layer]; empty unless QueryOptions::trace
};

struct QueryOptions {
  SamplingOptions sampling;
  int max_tokens = 64;
  bool stop_at_eos = true;
  std::optional<Retrieval> retrieval;  // overrides the session's
  bool trace = false;                  // record retrieval per generated token
  int trace_top = 8;                   // entries per head in a trace
  bool keep_turn = false;              // append question + answer to the session
  // Called for each generated token; returning false stops generation (a
  // cancelled client). Also receives every row of logits when set.
  std::function<bool(const GeneratedToken&, const float* logits)> on_token;
  // Asked before each window of the prefill: true ends the query with
  // Cancelled (a client that went away or ran out of time).
  std::function<bool()> cancelled;
};

struct QueryResult {
  std::vector<int> tokens;  // generated
  bool stopped_by_caller = false;
  int64_t prompt_tokens = 0;  // pending tail + question run for this query
};

struct ScoreResult {
  double log_likelihood = 0;  // Σ log p(continuation token | everything before)
  std::vector<float> token_log_probs;
  double perplexity = 0;  // exp(−log_likelihood / tokens)
};

// Where the storage engine's copy of a session ends (src/storage): stream
// positions and memory entries (per memory layer) it holds.
struct SessionCursor {
  int64_t stream = 0;
  int64_t entries = 0;
};

// What a session holds beyond a cursor, read in one consistent cut.
struct SessionChanges {
  SessionCursor end;               // the cut: the next call's `since`
  std::vector<Provenance> stream;  // positions [since.stream, end.stream)
  // Per memory layer (memory_layers() order) the entries [since.entries,
  // end.entries) as stored, [kv_head][entry][head_dim].
  std::vector<std::vector<float>> keys, values;
  int64_t committed = 0;
  std::vector<DocumentInfo> documents;
  std::string cache_state;  // what a lambda stream continues from; empty under fot
  bool memory = false;      // whether keys, values, committed and cache_state were read
};

// A session as the storage engine keeps it, for Session::Restore.
struct StoredSession {
  SessionOptions options;
  std::string checkpoint_dir;  // a memory checkpoint (WriteCheckpoint); "" for none
  std::vector<Provenance> stream;
  std::vector<DocumentInfo> documents;
  int64_t committed = 0;
  int64_t entries = 0;  // per memory layer
  std::string cache_state;
};

// Appends memory entries to a session being restored: `index` into
// memory_layers(), ids [first, first + count), keys and values as in
// SessionChanges.
using EntrySink = std::function<absl::Status(int index, int64_t first, const float* keys,
                                             const float* values, int64_t count)>;
// Feeds every stored entry with id >= from to the sink, in id order.
using EntrySource = std::function<absl::Status(int64_t from, const EntrySink& sink)>;

// The options as JSON text and back (resolved for `config`): what the
// storage engine records of a session. DataLoss for text that is not such.
std::string EncodeSessionOptions(const SessionOptions& options);
absl::StatusOr<SessionOptions> DecodeSessionOptions(std::string_view text,
                                                    const ModelConfig& config);

class Session {
 public:
  static absl::StatusOr<std::unique_ptr<Session>> Create(const Engine* engine,
                                                         const SessionOptions& options);

  const SessionOptions& options() const { return options_; }
  // The layers with memory (the config's under fot; attention.memory_layers
  // under lambda), ascending.
  const std::vector<int>& memory_layers() const { return memory_layers_; }
  // The stream position of memory entry `id` — of committed memory, or of a
  // query's overlay, whose entries continue the stream with the query's own
  // tokens. Under fot every token enters memory (id = position); under lambda
  // the n_global sink tokens never do.
  int64_t EntryPosition(int64_t id) const;

  // Starts a document named `name`. AlreadyExists if a document of that name
  // exists (use its info and AppendToDocument to resume).
  absl::StatusOr<DocumentInfo> StartDocument(const std::string& name);

  // Appends tokens to document `name`, which must be the latest document (a
  // session's stream is its documents in order). With `commit`, windows that
  // have L − 1 tokens after them are then processed into memory (lambda:
  // blocks of L that have a token after them); without, they wait for
  // Commit. FailedPrecondition if `name` is not the latest document;
  // InvalidArgument for ids outside the vocabulary.
  absl::StatusOr<IngestProgress> AppendToDocument(const std::string& name,
                                                  absl::Span<const int> tokens, bool commit = true);
  // Processes every window the commit rule allows for the stream as it is
  // when Commit starts (see AppendToDocument).
  // Queries see the stream the same before and after: a window not yet
  // committed is part of their pending tail. On a failure the windows before
  // the failing one stay committed.
  [[nodiscard]] absl::Status Commit();

  std::vector<DocumentInfo> Documents() const;
  absl::StatusOr<DocumentInfo> Document(const std::string& name) const;

  // Hides a document's entries from retrieval (its tokens stay in the stream,
  // so positions and windows do not move). NotFound for an unknown name.
  [[nodiscard]] absl::Status DeleteDocument(const std::string& name);

  // Runs the pending tail + question, then generates. The question must not be
  // empty.
  absl::StatusOr<QueryResult> Generate(absl::Span<const int> question, const QueryOptions& options);

  // Log-likelihood of `continuation` after the session's stream + `context`.
  // `cancelled` as QueryOptions::cancelled.
  absl::StatusOr<ScoreResult> Score(absl::Span<const int> context,
                                    absl::Span<const int> continuation,
                                    const std::optional<Retrieval>& retrieval,
                                    std::function<bool()> cancelled = {});

  // What the memory layers retrieve for the last token of `text` run after the
  // session's stream (traces per layer, `top` entries per head).
  absl::StatusOr<std::vector<AttentionTrace>> Search(absl::Span<const int> text, int top,
                                                     const std::optional<Retrieval>& retrieval,
                                                     std::function<bool()> cancelled = {});

  // Inspection of the committed memory (memory_inspection.h).
  MemoryStats Stats() const;
  absl::StatusOr<std::vector<MemoryEntry>> ListEntries(int layer, int64_t offset,
                                                       int64_t limit) const;
  absl::StatusOr<std::vector<MemoryEntry>> EntryContext(int layer, int64_t id, int radius) const;
  // Token ids of the stream positions [first, first + count) (clamped).
  std::vector<int> StreamTokens(int64_t first, int64_t count) const;
  IngestProgress Progress() const;

  // Saves the options, memory (lambda: and sinks and rings), documents and
  // the pending tail to dir (atomically replaced). Load gives a session whose
  // queries equal this one's bit for bit; sessions saved before lambda
  // attention existed load as fot sessions. Every file goes through `env`.
  [[nodiscard]] absl::Status Save(const std::string& dir, Env* env = Env::Default()) const;
  static absl::StatusOr<std::unique_ptr<Session>> Load(const Engine* engine,
                                                       const std::string& dir);

  // --- The storage engine's view (src/storage/session_store.h) ---
  // Everything beyond `since`, read in one consistent cut. Without `memory`,
  // only the stream and documents (what an acknowledgement needs, read
  // without waiting for a commit in progress); end.entries is since.entries
  // and committed is not read.
  absl::StatusOr<SessionChanges> ChangesSince(const SessionCursor& since, bool memory = true) const;
  // Entries per memory layer.
  int64_t memory_entries() const;
  // What changes when a memory store builds or rebuilds its index (an IVF
  // retrained as its memory doubled): the built stores and their lists,
  // summed. A restart from a checkpoint taken before a rebuild redoes it.
  int64_t memory_index_shape() const;
  // Writes the committed memory into the new directory `dir` (WriteMemory):
  // restoring from it replays only the entries after it. Aborted unless the
  // memory holds `entries` entries (what the storage engine holds).
  [[nodiscard]] absl::Status WriteCheckpoint(const std::string& dir, Env& env,
                                             int64_t entries) const;
  // The session `stored` describes: memory from its checkpoint, then the
  // entries `entries` feeds beyond it. DataLoss when the parts do not fit.
  static absl::StatusOr<std::unique_ptr<Session>> Restore(const Engine* engine,
                                                          StoredSession stored,
                                                          const EntrySource& entries);

 private:
  // Hides memory entries of deleted documents that commits have added since
  // the delete.
  absl::Status HideDeletedDocuments() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(stream_mu_);

  // Appends to the latest document (AppendToDocument without a commit).
  absl::Status AppendLocked(const std::string& name, absl::Span<const int> tokens)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(stream_mu_);
  // The memory part of ChangesSince.
  absl::Status ReadMemoryChanges(const SessionCursor& since, SessionChanges* changes) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_, stream_mu_);

  // Parts of Restore: the stored Λ state (checked against the commit point),
  // and entries appended to memory_layers()[index] with the stream's provenance.
  absl::Status RestoreCache(const std::string& cache_state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RestoreEntries(int index, int64_t first, const float* keys, const float* values,
                              int64_t count) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, stream_mu_);

  // Writes the session's files into the empty directory `staging`.
  absl::Status WriteLocked(const std::string& staging, Env& env) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  Session(const Engine* engine, SessionOptions options, ModelState state);

  // Processes every full window that has L − 1 tokens after it (lambda:
  // every block of L that has a token after it).
  absl::Status CommitWindows() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A query's state: a private overlay over the session's memory.
  absl::StatusOr<ModelState> QueryState(const std::optional<Retrieval>& retrieval) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Pending tail + `extra`, with provenance (question tokens: document -1).
  void QueryInput(absl::Span<const int> extra, std::vector<int>* tokens,
                  std::vector<Provenance>* provenance) const ABSL_SHARED_LOCKS_REQUIRED(mu_)
      ABSL_LOCKS_EXCLUDED(stream_mu_);

  const Engine* engine_;
  const SessionOptions options_;
  const int last_context_length_;
  const std::vector<int> memory_layers_;
  const int64_t sink_tokens_;  // StreamCache::sink_tokens, for EntryPosition (no lock)

  // mu_ guards the model state (memory); stream_mu_ the stream and
  // documents, so that appending to the stream does not wait for a commit.
  mutable absl::Mutex mu_ ABSL_ACQUIRED_BEFORE(stream_mu_);
  ModelState state_ ABSL_GUARDED_BY(mu_);  // memory of committed windows
  // stream_[0, committed_) is in memory. Changed only with mu_ held
  // exclusively; atomic so that progress reads it without waiting for mu_.
  std::atomic<int64_t> committed_{0};
  mutable absl::Mutex stream_mu_;
  std::vector<int> stream_ ABSL_GUARDED_BY(stream_mu_);  // every token ingested
  std::vector<Provenance> provenance_ ABSL_GUARDED_BY(stream_mu_);
  std::vector<DocumentInfo> documents_ ABSL_GUARDED_BY(stream_mu_);
};

}  // namespace fot

#endif  // FOTSERVE_SRC_ENGINE_SESSION_H_
