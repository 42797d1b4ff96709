// fot-dict-eval (issue 5): the accuracy of the project's trained model
// (models/fot-dict) through the C++ engine, as its memory grows.
//
// For every memory size (--sizes) a fresh dictionary document (BOS + records
// KEY=VALUE;, tools/dict_corpus.h, in tools/fot_data.py's format; seeds from
// 1 000 000 up, std::mt19937, so never a training document) streams into a
// fot::Session, StartDocument/AppendToDocument as the service does. It holds
// just enough records that `size` tokens are in memory (committed) when the
// questions come, and ends on a record boundary. Then --queries records are
// drawn uniformly among those lying wholly in memory (so outside the local
// window of the question) and "?KEY=" is asked for each: greedy, 5 tokens,
// exact match of "VALUE;". Accuracy is reported over all of them and, apart,
// over the records not cut by a window boundary.
//
// --layout picks how records meet the model's windows of W tokens. "stream":
// back to back, so ~7% of records (W 128) straddle a window boundary; their
// value lands in a window that never saw the key, and no model under DESIGN.md
// §1 can answer them (that is what the second table leaves out). "aligned"
// (default): a record that would straddle a boundary starts at it, the gap
// filled with filler text, as a client that knows W would stream a dictionary.
// Both layouts of a seed hold the same records.
//
// Configurations (rows), the same documents and questions for each:
//   dense      flat store, every memory entry read (the reference semantics)
//   knn        flat store, exact top-K (--top_k) per query and head
//   ivf        IVF store (--ivf spec, default options), top-K
//   hnsw       HNSW store (--hnsw spec), top-K
//   ivf-exact  exact top-K over the IVF session's keys (knn:K:exact): the
//              reference for ivf at every size, without a flat store's
//              quadratic ingest
//   ivf-dense  dense retrieval over the IVF session's memory (dense reads
//              every entry whatever the index), at sizes above
//              --max_dense_tokens, where the flat-store rows do not run
//   off        the model with its memory layers removed: it must be near
//              chance (1e-4 for four random digits), which shows that the
//              answers come from memory
// --ivf_scans=0.01,0.02,... adds one ivf row per share of keys a query may
// scan (SearchFilter::max_scan), all over the same IVF ingest.
//
// Retrieval on the model's own queries (--retrieval_stats, default on): for
// every ivf row, each question is also asked with exact search over the same
// memory, both traced with K entries per head, and for every answer token
// up to the first one where the two answers differ, per memory layer and
// head: recall@K (share of the exact top K retrieved) and attention-mass
// recall (share of the exact top K's softmax mass that the retrieved set
// carries). The store's search counters give the keys scanned per query,
// as a share of the store, and the list bounds evaluated (each ~2 keys of
// work). These are the queries that decide the answer: the last question
// token's and each generated token's.
//
// With --passkey=N, N passkey documents per size (fot_data.py's format, the
// passkey at evenly spaced depths of the memory) are asked too.
//
// One ingest serves several rows. A query can override the session's
// retrieval (QueryOptions::retrieval), and what a window leaves in memory does
// not depend on how the memory layer read memory while the window ran, IF the
// model has at most one memory layer (fot-dict: layer 2 of 4): the keys and
// values a memory layer stores are projections of its input, which comes from
// the layers below it, and those attend only locally; what the memory layer
// computes feeds the layers above it, whose caches are dropped when the window
// moves to memory. So each store is ingested once, with the cheapest read
// (knn:1), and the rows of that store ask with their own retrieval over the
// same memory. --check_shared_ingest (default on) verifies it first: flat
// sessions ingested with dense and with knn:1 retrieval must give
// bit-identical logits (the tool stops with an error otherwise).
// With more than one memory layer every row ingests with its own retrieval.
//
// Cost (2 shared cores): ingest into a flat store reads all of memory per
// window, so it is quadratic (65 536 tokens: 13-50 s, 262 144: 197-241 s);
// HNSW ingests only ~200-800 tokens/s (65 536: 160-240 s); IVF 65 536 tokens
// in 7 s and 1 048 576 in 135 s. Hence the caps --max_dense_tokens and
// --max_hnsw_tokens (default 65536); IVF and memory off run at every size.
// The defaults take ~15 min here, most of it the 1M dense questions (~1.4 s
// each) and the HNSW ingest; --passkey=N adds N ingests per store and size.
//
// Progress (ingest tokens/s) goes to stderr; the tables (markdown) to stdout.
// Not run in CI.
//
//   fot-dict-eval [--sizes=4096,65536,1048576] [--queries=200] [--top_k=64]
//                 [--layout=aligned|stream]
//                 [--configs=dense,knn,ivf,ivf-exact,hnsw,ivf-dense,off]
//                 [--ivf_scans=F,F,...] [--retrieval_stats] [--csv=FILE] [--passkey=0]
//                 [--max_dense_tokens=65536] [--max_hnsw_tokens=65536]
//                 [--max_ivf_tokens=2^31] [--max_off_tokens=2^31] [--seed=0]
//                 [--model=models/fot-dict] [--ivf=ivf] [--hnsw=hnsw]
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/engine/engine.h"
#include "src/engine/session.h"
#include "src/tokenizer/tokenizer.h"
#include "tools/dict_corpus.h"

ABSL_FLAG(std::string, model, FOT_SOURCE_DIR "/models/fot-dict",
          "model folder (config.json, model.safetensors, tokenizer.model)");
ABSL_FLAG(std::string, weights_dtype, "auto",
          "how the weights are kept: auto, f32, bf16, int8 or int8:64 (model_weights.h)");
ABSL_FLAG(std::string, sizes, "4096,65536,1048576",
          "comma-separated memory sizes in tokens (multiples of W keep them exact)");
ABSL_FLAG(int, queries, 200, "dictionary questions per size and configuration");
ABSL_FLAG(int, top_k, 64, "K of the knn configurations (the model card's knn:64)");
ABSL_FLAG(std::string, layout, "aligned",
          "dictionary layout: aligned (no record straddles a window boundary) or stream "
          "(records back to back)");
ABSL_FLAG(std::string, configs, "dense,knn,ivf,hnsw,ivf-dense,off",
          "configurations to run, in table order: dense, knn, ivf, ivf-exact, hnsw, ivf-dense, "
          "off");
ABSL_FLAG(std::string, ivf_scans, "",
          "extra ivf rows, one per share of keys a query may scan (e.g. 0.01,0.02,0.05)");
ABSL_FLAG(bool, retrieval_stats, true,
          "for ivf rows, compare what each answer token retrieved with exact search over the "
          "same memory (recall@K, attention-mass recall, keys scanned)");
ABSL_FLAG(std::string, csv, "", "also write one line per cell to this CSV file");
ABSL_FLAG(int64_t, max_dense_tokens, 65536,
          "largest size for the flat-store rows (dense, knn); their ingest is quadratic");
ABSL_FLAG(int64_t, max_hnsw_tokens, 65536, "largest size for hnsw (slow to add keys)");
ABSL_FLAG(int64_t, max_ivf_tokens, int64_t{1} << 31, "largest size for ivf and ivf-dense");
ABSL_FLAG(int64_t, max_off_tokens, int64_t{1} << 31, "largest size for memory off");
ABSL_FLAG(int, passkey, 0, "passkey documents per size (one question each); 0: none");
ABSL_FLAG(int, seed, 0,
          "document seed: a size's documents use std::mt19937 seeds 1000000 + 1000 * seed + "
          "21 * bit_width(size) (+ 1..20 for passkey documents)");
ABSL_FLAG(std::string, ivf, "ivf", "index spec of the ivf rows (memory_options.h ParseIndexSpec)");
ABSL_FLAG(std::string, hnsw, "hnsw", "index spec of the hnsw row");
ABSL_FLAG(bool, check_shared_ingest, true,
          "first check, at 4096 tokens, that flat sessions ingested with dense and with knn:1 "
          "retrieval give bit-identical logits (the premise of one ingest per store)");

namespace fot {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

constexpr uint32_t kEvalSeedBase = 1000000;  // fot_data.py's EVAL_SEED_BASE

enum class Store { kFlat, kIvf, kHnsw, kOff };

struct Row {
  std::string id;     // its --configs name
  std::string label;  // its table label
  Store store;
  Retrieval retrieval;  // of its questions
  // An approximate search over the IVF store: compared with exact search.
  bool approximate() const {
    return store == Store::kIvf && retrieval.mode == Retrieval::Mode::kKnn &&
           !retrieval.filter.exact;
  }
};

// What an approximate row retrieved against exact search over the same
// memory, summed over (question, answer token, memory layer, head).
struct RetrievalStats {
  int64_t compared = 0;
  double recall = 0, mass = 0;
  int64_t below_half = 0;  // compared queries that kept less than half the mass
  SearchCounters search;   // of the row's own questions
  int64_t store_size = 0;  // entries per store when asked
};

struct Tally {
  int asked = 0, correct = 0;
  void Add(bool ok) {
    ++asked;
    correct += ok;
  }
};

// One table cell's results.
struct Cell {
  bool ran = false;
  Tally all, uncut, passkey;
  RetrievalStats retrieval;
  double ingest_s = 0, ask_s = 0;
  bool shared_ingest = false;  // ingest_s also counts for another row
};

struct Flags {
  std::vector<int64_t> sizes;
  int queries, top_k, passkey, seed;
  bool aligned;  // --layout
  int64_t max_dense, max_hnsw, max_ivf, max_off;
  MemoryOptions ivf, hnsw;
  std::vector<Row> rows;
  bool check_shared_ingest;
  bool retrieval_stats;
  std::string csv;
};

absl::StatusOr<Retrieval> Knn(int k) { return ParseRetrieval(absl::StrCat("knn:", k)); }

absl::Status CheckSpecSyntax(const std::string& flag, const std::string& spec, IndexKind kind) {
  MemoryOptions options;
  absl::Status status = ParseIndexSpec(spec, &options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", status.message()));
  }
  if (options.index_kind != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": '", spec, "' is not an ", flag, " index spec"));
  }
  return absl::OkStatus();
}

// Flags are checked before the model loads; index specs are checked for
// syntax here and against the model in IndexOptions.
absl::StatusOr<Flags> ReadFlags() {
  Flags f;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',', absl::SkipEmpty())) {
    int64_t size = 0;
    if (!absl::SimpleAtoi(s, &size) || size < 1 || size > (int64_t{1} << 31)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sizes: '", s, "' is not a memory size in [1, 2^31] tokens"));
    }
    f.sizes.push_back(size);
  }
  if (f.sizes.empty()) return absl::InvalidArgumentError("--sizes lists no size");
  f.queries = absl::GetFlag(FLAGS_queries);
  f.top_k = absl::GetFlag(FLAGS_top_k);
  f.passkey = absl::GetFlag(FLAGS_passkey);
  f.seed = absl::GetFlag(FLAGS_seed);
  const std::string layout = absl::GetFlag(FLAGS_layout);
  if (layout != "aligned" && layout != "stream") {
    return absl::InvalidArgumentError(
        absl::StrCat("--layout: '", layout, "' is neither 'aligned' nor 'stream'"));
  }
  f.aligned = layout == "aligned";
  if (f.queries < 0) return absl::InvalidArgumentError("--queries must be >= 0");
  if (f.top_k < 1) return absl::InvalidArgumentError("--top_k must be >= 1");
  if (f.passkey < 0 || f.passkey > 20) {
    return absl::InvalidArgumentError("--passkey must lie in [0, 20]");
  }
  if (f.queries == 0 && f.passkey == 0) {
    return absl::InvalidArgumentError("nothing to ask: --queries and --passkey are both 0");
  }
  if (f.seed < 0 || f.seed > 4000000) {
    return absl::InvalidArgumentError("--seed must lie in [0, 4000000]");
  }
  f.max_dense = absl::GetFlag(FLAGS_max_dense_tokens);
  f.max_hnsw = absl::GetFlag(FLAGS_max_hnsw_tokens);
  f.max_ivf = absl::GetFlag(FLAGS_max_ivf_tokens);
  f.max_off = absl::GetFlag(FLAGS_max_off_tokens);
  if (f.max_dense < 0 || f.max_hnsw < 0 || f.max_ivf < 0 || f.max_off < 0) {
    return absl::InvalidArgumentError("the --max_*_tokens caps must be >= 0");
  }
  FOT_RETURN_IF_ERROR(CheckSpecSyntax("ivf", absl::GetFlag(FLAGS_ivf), IndexKind::kIvf));
  FOT_RETURN_IF_ERROR(CheckSpecSyntax("hnsw", absl::GetFlag(FLAGS_hnsw), IndexKind::kHnsw));
  f.check_shared_ingest = absl::GetFlag(FLAGS_check_shared_ingest);

  FOT_ASSIGN_OR_RETURN(const Retrieval knn, Knn(f.top_k));
  const std::string k = absl::StrCat("knn:", f.top_k);
  Retrieval knn_exact = knn;
  knn_exact.filter.exact = true;
  const Retrieval dense;
  const std::vector<Row> all = {
      {"dense", "dense (flat)", Store::kFlat, dense},
      {"knn", k + " exact (flat)", Store::kFlat, knn},
      {"ivf", k + " IVF", Store::kIvf, knn},
      {"ivf-exact", k + " exact over the IVF store", Store::kIvf, knn_exact},
      {"hnsw", k + " HNSW", Store::kHnsw, knn},
      {"ivf-dense", "dense over the IVF session's memory", Store::kIvf, dense},
      {"off", "memory off", Store::kOff, dense},
  };
  for (absl::string_view id :
       absl::StrSplit(absl::GetFlag(FLAGS_configs), ',', absl::SkipEmpty())) {
    auto it = std::find_if(all.begin(), all.end(), [&](const Row& r) { return r.id == id; });
    if (it == all.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--configs: unknown configuration '", id,
                       "' (dense, knn, ivf, ivf-exact, hnsw, ivf-dense, off)"));
    }
    f.rows.push_back(*it);
  }
  for (absl::string_view v :
       absl::StrSplit(absl::GetFlag(FLAGS_ivf_scans), ',', absl::SkipEmpty())) {
    double share = 0;
    if (!absl::SimpleAtod(v, &share) || !(share > 0 && share <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ivf_scans: '", v, "' is not a share of keys in (0, 1]"));
    }
    Row row{"ivf", absl::StrCat(k, " IVF max_scan=", v), Store::kIvf, knn};
    row.retrieval.filter.max_scan = share;
    f.rows.push_back(row);
  }
  f.retrieval_stats = absl::GetFlag(FLAGS_retrieval_stats);
  f.csv = absl::GetFlag(FLAGS_csv);
  if (f.rows.empty()) return absl::InvalidArgumentError("--configs lists no configuration");
  return f;
}

// The store options of the ivf and hnsw rows: the model's defaults (its
// mem_dtype) with the flag's spec, checked against the model's head_dim.
absl::Status IndexOptions(const MemoryOptions& defaults, int head_dim, Flags* f) {
  f->ivf = defaults;
  f->hnsw = defaults;
  FOT_RETURN_IF_ERROR(ParseIndexSpec(absl::GetFlag(FLAGS_ivf), &f->ivf));
  FOT_RETURN_IF_ERROR(ParseIndexSpec(absl::GetFlag(FLAGS_hnsw), &f->hnsw));
  absl::Status status = ValidateMemoryOptions(f->ivf, head_dim);
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("--ivf: ", status.message()));
  status = ValidateMemoryOptions(f->hnsw, head_dim);
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("--hnsw: ", status.message()));
  return absl::OkStatus();
}

bool RowRunsAt(const Flags& f, const Row& row, int64_t size) {
  if (row.id == "dense" || row.id == "knn") return size <= f.max_dense;
  if (row.id == "hnsw") return size <= f.max_hnsw;
  if (row.id == "ivf" || row.id == "ivf-exact") return size <= f.max_ivf;
  if (row.id == "ivf-dense") return size <= f.max_ivf && size > f.max_dense;
  return size <= f.max_off;  // off
}

// A question and its expected answer; `uncut` when the record lies within
// one window (passkey questions: always).
struct Question {
  std::vector<int> prompt, answer;
  bool uncut;
};

// A document and the questions asked after it.
struct Document {
  std::string name;
  std::vector<int> tokens;
  std::vector<Question> questions;
};

struct Model {
  const Engine* engine;      // with memory
  const Engine* off_engine;  // memory layers removed
  int window, last_context;
  bool shared_ingest;  // at most one memory layer: one ingest per store
};

// Streams `doc` into a new session of `store`; prints progress to stderr.
absl::StatusOr<std::unique_ptr<Session>> Ingest(const Model& model, const Flags& f, Store store,
                                                const Retrieval& retrieval,
                                                const std::string& label,
                                                const std::vector<int>& doc, double* seconds) {
  SessionOptions options;
  options.memory = model.engine->DefaultMemoryOptions();
  if (store == Store::kIvf) options.memory = f.ivf;
  if (store == Store::kHnsw) options.memory = f.hnsw;
  options.retrieval = retrieval;
  const Engine* engine = store == Store::kOff ? model.off_engine : model.engine;
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(engine, options));
  FOT_RETURN_IF_ERROR(session->StartDocument("eval").status());
  const auto start = Clock::now();
  auto last_print = start;
  const int64_t chunk = 16 * model.window;
  for (int64_t at = 0; at < static_cast<int64_t>(doc.size()); at += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(doc.size()) - at);
    FOT_RETURN_IF_ERROR(
        session->AppendToDocument("eval", absl::MakeConstSpan(doc).subspan(at, n)).status());
    const bool done = at + n == static_cast<int64_t>(doc.size());
    if (done || Seconds(last_print) > 10) {
      const double s = Seconds(start);
      std::fprintf(stderr, "  [%s] ingest %lld/%zu tokens, %.0f s, %.0f tokens/s\n", label.c_str(),
                   static_cast<long long>(at + n), doc.size(), s, (at + n) / std::max(s, 1e-9));
      last_print = Clock::now();
    }
  }
  *seconds = Seconds(start);
  return session;
}

// What one answer retrieved: per generated token, per (memory layer, head),
// the entries its query attended to in memory.
struct Answer {
  std::vector<int> tokens;
  std::vector<std::vector<std::vector<TracedEntry>>> retrieved;
};

// Asks q with `retrieval`; true on an exact match. With `logits`, appends
// every generated token's row of `vocab` logits to it; with `answer`, traces
// `top` entries per head into it.
absl::StatusOr<bool> Ask(Session* session, const Question& q, const Retrieval& retrieval,
                         int vocab = 0, std::vector<float>* logits = nullptr,
                         Answer* answer = nullptr, int top = 0) {
  QueryOptions options;
  options.max_tokens = static_cast<int>(q.answer.size());
  options.stop_at_eos = false;
  options.retrieval = retrieval;
  options.trace = answer != nullptr;
  options.trace_top = std::max(top, 1);
  if (logits != nullptr || answer != nullptr) {
    options.on_token = [logits, vocab, answer](const GeneratedToken& token, const float* row) {
      if (logits != nullptr) logits->insert(logits->end(), row, row + vocab);
      if (answer != nullptr) {
        answer->tokens.push_back(token.token);
        std::vector<std::vector<TracedEntry>>& heads = answer->retrieved.emplace_back();
        for (const AttentionTrace& layer : token.traces) {
          heads.insert(heads.end(), layer.heads.begin(), layer.heads.end());
        }
      }
      return true;
    };
  }
  FOT_ASSIGN_OR_RETURN(QueryResult result, session->Generate(q.prompt, options));
  return result.tokens == q.answer;
}

// Adds `got` against the exact `want` into *stats, token by token until
// the answers part (later queries differ).
void Compare(const Answer& want, const Answer& got, RetrievalStats* stats) {
  for (size_t t = 0; t < want.retrieved.size() && t < got.retrieved.size(); ++t) {
    for (size_t h = 0; h < want.retrieved[t].size() && h < got.retrieved[t].size(); ++h) {
      const std::vector<TracedEntry>& exact = want.retrieved[t][h];
      if (exact.empty()) continue;
      double mass = 0, kept = 0;
      int found = 0;
      for (const TracedEntry& e : exact) {
        mass += e.attention_share;
        const auto& g = got.retrieved[t][h];
        if (std::any_of(g.begin(), g.end(), [&](const TracedEntry& x) { return x.id == e.id; })) {
          ++found;
          kept += e.attention_share;
        }
      }
      ++stats->compared;
      stats->recall += static_cast<double>(found) / exact.size();
      const double share = mass > 0 ? kept / mass : 1.0;
      stats->mass += share;
      stats->below_half += share < 0.5;
    }
    if (want.tokens[t] != got.tokens[t]) break;
  }
}

SearchCounters Counters(const Session& session, int64_t* store_size) {
  SearchCounters sum;
  for (const LayerStats& layer : session.Stats().layers) {
    for (const HeadStats& head : layer.heads) {
      sum.queries += head.search.queries;
      sum.keys_scored += head.search.keys_scored;
      sum.lists_bounded += head.search.lists_bounded;
      *store_size = head.entries;
    }
  }
  return sum;
}

// The dictionary document of `size` tokens of memory and its questions
// (chosen once the committed length is known).
Document DictionaryDocument(const DictCorpus& corpus, const Model& model, bool aligned,
                            int64_t size, uint32_t seed, std::vector<DictRecord>* records) {
  // The fewest records that make the document at least size + L − 1 tokens
  // long: the session then commits exactly `size` tokens (for size a multiple
  // of W), the last record is whole, and the question's last window holds
  // only records.
  const int window = aligned ? model.window : 0;
  const int64_t r = DictCorpus::RecordsToFill(size + model.last_context - 1, window);
  Document doc;
  doc.name = "dictionary";
  doc.tokens = corpus.Dictionary(r, seed, records, window);
  return doc;
}

// --queries records drawn uniformly among those wholly in memory.
void ChooseQuestions(const DictCorpus& corpus, const Model& model, int64_t committed,
                     const std::vector<DictRecord>& records, int queries, uint32_t seed,
                     std::vector<Question>* out) {
  std::vector<const DictRecord*> in_memory;
  for (const DictRecord& r : records) {
    if (r.position + kDictRecordTokens <= committed) in_memory.push_back(&r);
  }
  std::vector<const DictRecord*> picked;
  std::mt19937 rng(seed ^ 0x5bd1e995u);
  std::sample(in_memory.begin(), in_memory.end(), std::back_inserter(picked), queries, rng);
  const int64_t w = model.window;
  for (const DictRecord* r : picked) {
    out->push_back({corpus.Query(*r), corpus.Answer(*r),
                    r->position / w == (r->position + kDictRecordTokens - 1) / w});
  }
}

// The claim that lets one ingest serve several rows: a flat session ingested
// with dense retrieval holds the same memory as one ingested with knn:1, so
// the same questions give bit-identical logits. Checked on a document of its
// own with 4096 tokens of memory (the property is the model's, not the
// size's); returns the number of questions compared.
absl::StatusOr<int> CheckSharedIngest(const DictCorpus& corpus, const Model& model, const Flags& f,
                                      const Retrieval& shared) {
  const int64_t size = 4096;
  std::vector<DictRecord> records;
  Document doc = DictionaryDocument(corpus, model, f.aligned, size, kEvalSeedBase + 999, &records);
  ChooseQuestions(corpus, model, size, records, 5, kEvalSeedBase + 999, &doc.questions);
  double seconds = 0;
  FOT_ASSIGN_OR_RETURN(
      std::unique_ptr<Session> a,
      Ingest(model, f, Store::kFlat, shared, "check: flat, knn:1 ingest", doc.tokens, &seconds));
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> b,
                       Ingest(model, f, Store::kFlat, Retrieval{}, "check: flat, dense ingest",
                              doc.tokens, &seconds));
  if (a->Progress().committed_tokens != size) {
    return absl::InternalError("the check document did not commit 4096 tokens");
  }
  const int vocab = model.engine->config().vocab_size;
  for (const Question& q : doc.questions) {
    std::vector<float> logits_a, logits_b;
    FOT_RETURN_IF_ERROR(Ask(a.get(), q, Retrieval{}, vocab, &logits_a).status());
    FOT_RETURN_IF_ERROR(Ask(b.get(), q, Retrieval{}, vocab, &logits_b).status());
    if (logits_a.size() != logits_b.size() ||
        std::memcmp(logits_a.data(), logits_b.data(), logits_a.size() * sizeof(float)) != 0) {
      return absl::InternalError(
          "a flat session ingested with dense retrieval answers differently from one ingested "
          "with knn:1: memory depends on the ingest retrieval, so one ingest cannot serve "
          "several rows (--nocheck_shared_ingest skips this check at your own risk)");
    }
  }
  std::fprintf(stderr, "shared ingest check: bit-identical logits on %zu questions\n",
               doc.questions.size());
  return static_cast<int>(doc.questions.size());
}

std::string Thousands(int64_t n) {
  std::string digits = absl::StrCat(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ' ';
    out += digits[i];
  }
  return out;
}

std::string Percent(const Tally& t) {
  if (t.asked == 0) return "— (none asked)";
  return absl::StrFormat("%.1f%% (%d/%d)", 100.0 * t.correct / t.asked, t.correct, t.asked);
}

void PrintTable(const std::string& title, const Flags& f,
                const std::vector<std::vector<Cell>>& cells,
                const std::function<std::string(const Cell&)>& text) {
  std::printf("\n### %s\n\n| configuration |", title.c_str());
  for (int64_t size : f.sizes) std::printf(" %s |", Thousands(size).c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < f.sizes.size(); ++i) std::printf("---|");
  std::printf("\n");
  for (size_t r = 0; r < f.rows.size(); ++r) {
    std::printf("| %s |", f.rows[r].label.c_str());
    for (const Cell& cell : cells[r]) std::printf(" %s |", cell.ran ? text(cell).c_str() : "—");
    std::printf("\n");
  }
}

// Keys scanned and list estimates (~2 keys each) per query, as shares of the store.
std::pair<double, double> ScannedShares(const Cell& c) {
  const double per = static_cast<double>(c.retrieval.search.queries) * c.retrieval.store_size;
  if (per <= 0) return {0, 0};
  return {c.retrieval.search.keys_scored / per, 2.0 * c.retrieval.search.lists_bounded / per};
}

// A per-compared-query mean of the cell's retrieval sums.
double MeanOf(const Cell& c, double sum) {
  return c.retrieval.compared > 0 ? sum / c.retrieval.compared : 0.0;
}

void PrintRetrievalTable(const Flags& f, const std::vector<std::vector<Cell>>& cells) {
  PrintTable(absl::StrCat("Retrieval on the model's own queries against exact search over the "
                          "same memory: recall@",
                          f.top_k,
                          ", attention-mass recall, queries keeping < half the mass; keys "
                          "scanned per query (+ list bounds, ~2 keys each), share of the store"),
             f, cells, [](const Cell& c) {
               const auto [keys, bounds] = ScannedShares(c);
               if (c.retrieval.compared == 0) {
                 return absl::StrFormat("scanned %.2f%%", 100 * keys);
               }
               return absl::StrFormat("recall %.3f, mass %.4f, <½ %.1f%%; scanned %.2f%% (+%.2f%%)",
                                      MeanOf(c, c.retrieval.recall), MeanOf(c, c.retrieval.mass),
                                      100.0 * c.retrieval.below_half / c.retrieval.compared,
                                      100 * keys, 100 * bounds);
             });
}

// One line per cell that asked questions (bench/plot_fot_dict_eval.py reads it).
absl::Status WriteCsv(const Flags& f, const std::vector<std::vector<Cell>>& cells,
                      const std::vector<int64_t>& committed_at) {
  std::string csv =
      "tokens,configuration,accuracy,recall,mass_recall,below_half,keys_scanned,"
      "bounds,ingest_s,ask_s\n";
  for (size_t r = 0; r < f.rows.size(); ++r) {
    for (size_t si = 0; si < f.sizes.size(); ++si) {
      const Cell& c = cells[r][si];
      if (!c.ran || c.all.asked == 0) continue;
      const auto [keys, bounds] = ScannedShares(c);
      const double below_half =
          c.retrieval.compared > 0
              ? static_cast<double>(c.retrieval.below_half) / c.retrieval.compared
              : 0.0;
      absl::StrAppendFormat(&csv, "%d,%s,%.4f,%.4f,%.5f,%.4f,%.5f,%.5f,%.1f,%.1f\n",
                            committed_at[si], f.rows[r].label,
                            static_cast<double>(c.all.correct) / c.all.asked,
                            MeanOf(c, c.retrieval.recall), MeanOf(c, c.retrieval.mass), below_half,
                            keys, bounds, c.ingest_s, c.ask_s);
    }
  }
  return WriteFileAtomically(*Env::Default(), f.csv, csv);
}

// What every size of a run shares.
struct Eval {
  const DictCorpus& corpus;
  const Model& model;
  const Flags& f;
  Retrieval knn1;       // the cheapest read: the ingest of rows that share one
  Retrieval knn_exact;  // exact top-K: the reference of --retrieval_stats
};

// What a run measured.
struct Results {
  std::vector<std::vector<Cell>> cells;  // [row][size]
  std::vector<int64_t> committed_at;     // [size]: tokens in memory when asked; 0 if none
};

// The report's word on the shared ingest: checked (CheckSharedIngest), not
// checked, or not shared.
absl::StatusOr<std::string> SharedIngestNote(const Eval& e) {
  std::string check_note = "not run (--nocheck_shared_ingest)";
  if (!e.model.shared_ingest) {
    check_note = "not shared: several memory layers, each row ingests on its own";
  } else if (e.f.check_shared_ingest) {
    FOT_ASSIGN_OR_RETURN(const int compared, CheckSharedIngest(e.corpus, e.model, e.f, e.knn1));
    check_note = absl::StrCat(
        "flat sessions ingested with dense and with knn:1 retrieval gave "
        "bit-identical logits on ",
        compared, " questions at 4 096 tokens");
  }
  return check_note;
}

// A seed per size (not per position in --sizes), so a cell's documents do
// not depend on the other sizes asked for; passkey documents take the next
// --passkey seeds.
uint32_t SizeSeed(const Flags& f, int64_t size) {
  return kEvalSeedBase + 1000 * static_cast<uint32_t>(f.seed) +
         21 * static_cast<uint32_t>(std::bit_width(static_cast<uint64_t>(size)));
}

// What is asked at one size: the dictionary document, whose questions are
// chosen once the first ingest tells the committed length, and the passkey
// documents.
struct SizeDocuments {
  uint32_t seed = 0;
  std::vector<DictRecord> records;
  Document dict;
  std::vector<Document> passkeys;
};

absl::StatusOr<SizeDocuments> MakeSizeDocuments(const Eval& e, int64_t size) {
  SizeDocuments docs;
  docs.seed = SizeSeed(e.f, size);
  docs.dict = DictionaryDocument(e.corpus, e.model, e.f.aligned, size, docs.seed, &docs.records);
  for (int j = 0; j < e.f.passkey; ++j) {
    FOT_ASSIGN_OR_RETURN(
        PasskeyDocument p,
        e.corpus.Passkey(size, e.model.last_context, (j + 0.5) / e.f.passkey, docs.seed + 1 + j));
    docs.passkeys.push_back({absl::StrCat("passkey ", j + 1, "/", e.f.passkey),
                             std::move(p.tokens),
                             {{p.question, p.answer, true}}});
  }
  return docs;
}

// The rows that run at `size`, grouped by the ingest they share.
std::map<std::pair<Store, std::string>, std::vector<size_t>> IngestGroups(const Eval& e,
                                                                          int64_t size) {
  std::map<std::pair<Store, std::string>, std::vector<size_t>> groups;
  for (size_t r = 0; r < e.f.rows.size(); ++r) {
    if (!RowRunsAt(e.f, e.f.rows[r], size)) continue;
    const Retrieval& ingest = e.model.shared_ingest ? e.knn1 : e.f.rows[r].retrieval;
    groups[{e.f.rows[r].store, DescribeRetrieval(ingest)}].push_back(r);
  }
  return groups;
}

// Asks `row` every question into *cell. With --retrieval_stats and an
// approximate row, each question is also asked with exact search, once for
// all the rows of the session (*exact_answers), and the two compared.
absl::Status AskRow(const Eval& e, Session* session, const std::vector<Question>& questions,
                    const Row& row, std::vector<Answer>* exact_answers, Cell* cell) {
  const bool stats = e.f.retrieval_stats && row.approximate();
  double ask_s = 0;
  for (size_t qi = 0; qi < questions.size(); ++qi) {
    const Question& q = questions[qi];
    Answer got;
    if (stats && (*exact_answers)[qi].tokens.empty()) {  // once per question for all rows
      FOT_RETURN_IF_ERROR(
          Ask(session, q, e.knn_exact, 0, nullptr, &(*exact_answers)[qi], e.f.top_k).status());
    }
    const Answer& exact = (*exact_answers)[qi];
    const SearchCounters before = Counters(*session, &cell->retrieval.store_size);
    const auto start = Clock::now();
    FOT_ASSIGN_OR_RETURN(const bool ok, Ask(session, q, row.retrieval, 0, nullptr,
                                            stats ? &got : nullptr, e.f.top_k));
    ask_s += Seconds(start);
    const SearchCounters after = Counters(*session, &cell->retrieval.store_size);
    cell->retrieval.search.queries += after.queries - before.queries;
    cell->retrieval.search.keys_scored += after.keys_scored - before.keys_scored;
    cell->retrieval.search.lists_bounded += after.lists_bounded - before.lists_bounded;
    if (stats) Compare(exact, got, &cell->retrieval);
    cell->all.Add(ok);
    if (q.uncut) cell->uncut.Add(ok);
  }
  cell->ask_s = ask_s;
  return absl::OkStatus();
}

// Ingests each passkey document into a session of its own and asks it of every row.
absl::Status AskPasskeys(const Eval& e, Store store, const Retrieval& ingest,
                         const std::string& group, const std::vector<Document>& passkeys,
                         const std::vector<size_t>& rows, size_t si, Results* results) {
  for (const Document& p : passkeys) {
    double seconds = 0;
    FOT_ASSIGN_OR_RETURN(
        std::unique_ptr<Session> session,
        Ingest(e.model, e.f, store, ingest, group + " " + p.name, p.tokens, &seconds));
    for (size_t r : rows) {
      FOT_ASSIGN_OR_RETURN(const bool ok,
                           Ask(session.get(), p.questions.front(), e.f.rows[r].retrieval));
      results->cells[r][si].passkey.Add(ok);
    }
  }
  return absl::OkStatus();
}

// One ingest of the dictionary into `store`, asked by each of `rows` at size
// index `si`; then the passkey documents.
absl::Status RunGroup(const Eval& e, size_t si, Store store, const std::vector<size_t>& rows,
                      SizeDocuments* docs, Results* results) {
  const Flags& f = e.f;
  const int64_t size = f.sizes[si];
  const Retrieval& ingest = e.model.shared_ingest ? e.knn1 : f.rows[rows.front()].retrieval;
  std::vector<std::string> labels;
  for (size_t r : rows) labels.push_back(f.rows[r].id);
  const std::string group = absl::StrCat(Thousands(size), " ", absl::StrJoin(labels, "+"));
  double ingest_s = 0;
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session,
                       Ingest(e.model, f, store, ingest, group, docs->dict.tokens, &ingest_s));
  const int64_t committed = session->Progress().committed_tokens;
  int64_t& committed_at = results->committed_at[si];
  if (docs->dict.questions.empty() && f.queries > 0) {
    committed_at = committed;
    ChooseQuestions(e.corpus, e.model, committed, docs->records, f.queries, docs->seed,
                    &docs->dict.questions);
  } else if (committed != committed_at && f.queries > 0) {
    return absl::InternalError("sessions of one document committed different lengths");
  }
  std::vector<Answer> exact_answers(docs->dict.questions.size());
  for (size_t r : rows) {
    Cell& cell = results->cells[r][si];
    cell.ran = true;
    cell.ingest_s = ingest_s;
    cell.shared_ingest = rows.size() > 1;
    FOT_RETURN_IF_ERROR(
        AskRow(e, session.get(), docs->dict.questions, f.rows[r], &exact_answers, &cell));
    std::fprintf(stderr, "  [%s] %s: %s, uncut %s, %.1f s to ask\n", group.c_str(),
                 f.rows[r].label.c_str(), Percent(cell.all).c_str(), Percent(cell.uncut).c_str(),
                 cell.ask_s);
  }
  session.reset();  // before the passkey sessions
  return AskPasskeys(e, store, ingest, group, docs->passkeys, rows, si, results);
}

// Every row that runs at size index `si`.
absl::Status RunSize(const Eval& e, size_t si, Results* results) {
  const int64_t size = e.f.sizes[si];
  FOT_ASSIGN_OR_RETURN(SizeDocuments docs, MakeSizeDocuments(e, size));
  const auto groups = IngestGroups(e, size);
  std::fprintf(stderr, "size %s: dictionary of %zu records (%zu tokens), seed %u\n",
               Thousands(size).c_str(), docs.records.size(), docs.dict.tokens.size(), docs.seed);
  for (const auto& [key, rows] : groups) {
    FOT_RETURN_IF_ERROR(RunGroup(e, si, key.first, rows, &docs, results));
  }
  return absl::OkStatus();
}

// The report's title and what its columns and cells are.
void PrintReportHeader(const std::string& dir, const Model& model, const Flags& f,
                       const std::vector<int64_t>& committed_at, const std::string& check_note) {
  const ModelConfig& config = model.engine->config();
  std::string layers = absl::StrJoin(config.mem_layers, ",");
  std::printf("## fot-dict-eval: %s through the C++ engine\n\n", dir.c_str());
  std::printf(
      "W %d, L %d, memory layers [%s] of %d; %s dictionary layout; %d dictionary questions per "
      "cell (records drawn uniformly among those wholly in memory), greedy, exact match of "
      "\"VALUE;\"; seed %d (documents from std::mt19937 seeds >= %u, never training data); knn "
      "K = %d; ivf \"%s\", hnsw \"%s\".\n",
      model.window, model.last_context, layers.c_str(), config.num_hidden_layers,
      f.aligned ? "window-aligned" : "stream", f.queries, f.seed, kEvalSeedBase, f.top_k,
      DescribeOptions(f.ivf).c_str(), DescribeOptions(f.hnsw).c_str());
  std::printf("Columns: tokens in memory when asked (committed:");
  for (size_t si = 0; si < f.sizes.size(); ++si) {
    std::printf(" %s", committed_at[si] > 0 ? Thousands(committed_at[si]).c_str() : "?");
  }
  std::printf("). One ingest per store serves its rows (shared ingest check: %s).\n",
              check_note.c_str());
}

// The dictionary accuracy and time tables, and with --retrieval_stats the retrieval table.
void PrintDictionaryTables(const Flags& f, const std::vector<std::vector<Cell>>& cells) {
  PrintTable("Dictionary, all asked records", f, cells,
             [](const Cell& c) { return Percent(c.all); });
  PrintTable("Dictionary, records not cut by a window boundary", f, cells,
             [](const Cell& c) { return Percent(c.uncut); });
  PrintTable(
      "Time per cell: ingest of the dictionary document (shared: one ingest serves "
      "several rows) + asking",
      f, cells, [&](const Cell& c) {
        return absl::StrFormat("ingest %.1f s%s + ask %.1f s", c.ingest_s,
                               c.shared_ingest ? " (shared)" : "", c.ask_s);
      });
  if (f.retrieval_stats) PrintRetrievalTable(f, cells);
}

// What memory off would score by guessing, against what it did.
void PrintChanceLevel(const Flags& f, const std::vector<std::vector<Cell>>& cells) {
  int off_asked = 0;
  for (size_t r = 0; r < f.rows.size(); ++r) {
    if (f.rows[r].store != Store::kOff) continue;
    for (const Cell& c : cells[r]) off_asked += c.all.asked;
  }
  std::printf(
      "\nChance level (memory off): the value is 4 random digits, so a guess is right with "
      "probability 1e-4 per question (%.3f expected correct of the %d asked with memory off); "
      "passkey: 5 digits, 1e-5.\n",
      1e-4 * off_asked, off_asked);
}

absl::Status Run(Flags f) {
  const std::string dir = absl::GetFlag(FLAGS_model);
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                       Tokenizer::Load(dir + "/tokenizer.model"));
  FOT_ASSIGN_OR_RETURN(const DictCorpus corpus, DictCorpus::Create(tokenizer.get()));
  FOT_ASSIGN_OR_RETURN(const WeightsOptions weights,
                       ParseWeightsOptions(absl::GetFlag(FLAGS_weights_dtype)));
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Load(dir, weights));
  const ModelConfig& config = engine->config();
  if (config.mem_layers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " has no memory layers"));
  }
  ModelConfig off_config = config;
  off_config.mem_layers.clear();
  FOT_ASSIGN_OR_RETURN(ModelWeights off_weights, ModelWeights::Load(dir, off_config, weights));
  const Engine off_engine(Transformer(off_config, std::move(off_weights)));
  const Model model = {
      engine.get(), &off_engine, config.max_position_embeddings,
      config.last_context_length > 0 ? config.last_context_length : config.max_position_embeddings,
      config.mem_layers.size() == 1};
  FOT_RETURN_IF_ERROR(IndexOptions(engine->DefaultMemoryOptions(), config.head_dim(), &f));
  FOT_ASSIGN_OR_RETURN(const Retrieval knn1, Knn(1));
  FOT_ASSIGN_OR_RETURN(Retrieval knn_exact, Knn(f.top_k));
  knn_exact.filter.exact = true;
  const Eval e{corpus, model, f, knn1, knn_exact};

  Results results{std::vector<std::vector<Cell>>(f.rows.size(), std::vector<Cell>(f.sizes.size())),
                  std::vector<int64_t>(f.sizes.size(), 0)};
  FOT_ASSIGN_OR_RETURN(const std::string check_note, SharedIngestNote(e));
  for (size_t si = 0; si < f.sizes.size(); ++si) FOT_RETURN_IF_ERROR(RunSize(e, si, &results));

  PrintReportHeader(dir, model, f, results.committed_at, check_note);
  PrintDictionaryTables(f, results.cells);
  if (!f.csv.empty()) FOT_RETURN_IF_ERROR(WriteCsv(f, results.cells, results.committed_at));
  if (f.passkey > 0) {
    PrintTable(absl::StrCat("Passkey, ", f.passkey, " documents per size (exact match)"), f,
               results.cells, [](const Cell& c) { return Percent(c.passkey); });
  }
  PrintChanceLevel(f, results.cells);
  return absl::OkStatus();
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) {
  const std::vector<std::string> rest = fot::ParseCommandLine(
      argc, argv,
      "fot-dict-eval: exact-match accuracy of models/fot-dict as its memory grows "
      "(dense, knn over flat/IVF/HNSW stores, memory off)");
  if (!rest.empty()) {
    std::fprintf(stderr, "fot-dict-eval: unexpected argument '%s' (it takes only flags)\n",
                 rest.front().c_str());
    return 2;
  }
  absl::StatusOr<fot::Flags> flags = fot::ReadFlags();
  if (!flags.ok()) {
    std::fprintf(stderr, "fot-dict-eval: %s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  absl::Status status = fot::Run(*std::move(flags));
  if (!status.ok()) {
    std::fprintf(stderr, "fot-dict-eval: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
