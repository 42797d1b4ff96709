#include "src/engine/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "src/engine/memory_snapshot.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// Question and generated tokens belong to no ingested document.
constexpr int64_t kQueryDocument = -1;

const LogitsSink kIgnoreLogits = [](int64_t, int64_t, const float*) {};

// session.json: "fotserve-session 1" for fot sessions (as before lambda
// attention existed), 2 for lambda sessions, which older servers must refuse
// rather than load as fot.
constexpr char kFormatFot[] = "fotserve-session 1";
constexpr char kFormatLambda[] = "fotserve-session 2";

std::vector<int> LayersWithMemory(const ModelState& state) {
  std::vector<int> layers;
  for (size_t l = 0; l < state.memory.size(); ++l) {
    if (state.memory[l] != nullptr) layers.push_back(static_cast<int>(l));
  }
  return layers;
}

nlohmann::json AttentionJson(const AttentionOptions& a) {
  return {{"mode", AttentionModeName(a.mode)},
          {"n_global", a.n_global},
          {"local_window", a.local_window},
          {"memory_positioning", MemoryPositioningName(*a.memory_positioning)},
          {"memory_layers", *a.memory_layers}};
}

// The attention options saved by AttentionJson, resolved for `config`; fot
// when `json` is absent.
absl::StatusOr<AttentionOptions> AttentionFromJson(const nlohmann::json& json,
                                                   const ModelConfig& config) {
  if (json.is_null()) return AttentionOptions{};
  if (!json.is_object() || !json.contains("mode") || !json["mode"].is_string()) {
    return absl::DataLossError("attention is not an object with a mode");
  }
  AttentionSpec spec;
  spec.mode = json["mode"].get<std::string>();
  if (spec.mode == AttentionModeName(AttentionMode::kFot)) {
    return ApplyAttentionSpec(spec, AttentionOptions{}, config);
  }
  const auto& n_global = json.value("n_global", nlohmann::json());
  const auto& local_window = json.value("local_window", nlohmann::json());
  const auto& positioning = json.value("memory_positioning", nlohmann::json());
  const auto& layers = json.value("memory_layers", nlohmann::json());
  if (!n_global.is_number_integer() || !local_window.is_number_integer() ||
      !positioning.is_string() || !layers.is_array()) {
    return absl::DataLossError("lambda attention without all of its options");
  }
  spec.n_global = n_global.get<int>();
  spec.local_window = local_window.get<int>();
  spec.memory_positioning = positioning.get<std::string>();
  std::vector<int> layer_list;
  for (const auto& layer : layers) {
    if (!layer.is_number_integer()) return absl::DataLossError("a memory layer is not a number");
    layer_list.push_back(layer.get<int>());
  }
  spec.memory_layers = layer_list.empty() ? "none" : absl::StrJoin(layer_list, ",");
  return ApplyAttentionSpec(spec, AttentionOptions{}, config);
}

// Strings of the stored state, checked: nlohmann's typed reads throw on a
// wrong type, and a bad record must be a DataLoss of its session alone.
template <typename T>
absl::StatusOr<T> Field(const nlohmann::json& json, const char* name) {
  if (!json.is_object() || !json.contains(name)) {
    return absl::DataLossError(absl::StrCat("the stored session has no '", name, "'"));
  }
  try {
    return json.at(name).get<T>();
  } catch (const nlohmann::json::exception&) {
    return absl::DataLossError(absl::StrCat("the stored session's '", name, "' has a wrong type"));
  }
}

}  // namespace

std::string EncodeSessionOptions(const SessionOptions& options) {
  nlohmann::json json;
  json["index"] = DescribeOptions(options.memory);
  json["retrieval"] = DescribeRetrieval(options.retrieval);
  json["last_context_length"] = options.last_context_length;
  // Only lambda has options of its own; AttentionFromJson reads none as fot.
  if (options.attention.mode != AttentionMode::kFot) {
    json["attention"] = AttentionJson(options.attention);
  }
  return json.dump();
}

absl::StatusOr<SessionOptions> DecodeSessionOptions(std::string_view text,
                                                    const ModelConfig& config) {
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError("the stored session options are not a JSON object");
  }
  SessionOptions options;
  FOT_ASSIGN_OR_RETURN(const std::string index, Field<std::string>(json, "index"));
  FOT_ASSIGN_OR_RETURN(const std::string retrieval, Field<std::string>(json, "retrieval"));
  FOT_ASSIGN_OR_RETURN(options.last_context_length, Field<int>(json, "last_context_length"));
  absl::Status parsed = ParseIndexSpec(index, &options.memory);
  absl::StatusOr<Retrieval> retrieval_options = ParseRetrieval(retrieval);
  absl::StatusOr<AttentionOptions> attention = absl::DataLossError("no attention");
  try {
    attention = AttentionFromJson(json.value("attention", nlohmann::json()), config);
  } catch (const nlohmann::json::exception&) {
  }
  if (!parsed.ok() || !retrieval_options.ok() || !attention.ok()) {
    return absl::DataLossError(
        "the stored session options do not parse (index, retrieval or attention)");
  }
  options.retrieval = *retrieval_options;
  options.attention = *attention;
  return options;
}

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const Engine* engine,
                                                         const SessionOptions& options) {
  const ModelConfig& config = engine->config();
  const int last =
      options.last_context_length > 0 ? options.last_context_length : config.last_context_length;
  FOT_RETURN_IF_ERROR(CheckLastContextLength(last, config.max_position_embeddings));
  if (options.retrieval.mode == Retrieval::Mode::kKnn && options.retrieval.top_k < 1) {
    return absl::InvalidArgumentError("knn retrieval needs top_k >= 1");
  }
  FOT_RETURN_IF_ERROR(ValidateMemoryOptions(options.memory, config.head_dim()));
  FOT_ASSIGN_OR_RETURN(ModelState state, engine->NewState(options.memory, options.attention));
  SessionOptions resolved = options;
  resolved.last_context_length = last;
  resolved.attention = state.attention;
  return std::unique_ptr<Session>(new Session(engine, resolved, std::move(state)));
}

Session::Session(const Engine* engine, SessionOptions options, ModelState state)
    : engine_(engine),
      options_(std::move(options)),
      last_context_length_(options_.last_context_length),
      memory_layers_(LayersWithMemory(state)),
      sink_tokens_(state.cache->sink_tokens()),
      state_(std::move(state)) {
  state_.retrieval = options_.retrieval;
}

int64_t Session::EntryPosition(int64_t id) const { return id + sink_tokens_; }

absl::StatusOr<DocumentInfo> Session::StartDocument(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("a document needs a non-empty id");
  absl::MutexLock lock(&stream_mu_);
  for (const DocumentInfo& d : documents_) {
    if (d.name == name) {
      return absl::AlreadyExistsError(absl::StrCat("document '", name, "' already exists (",
                                                   d.tokens, " tokens); resume it instead"));
    }
  }
  documents_.push_back({static_cast<int64_t>(documents_.size()), name,
                        static_cast<int64_t>(stream_.size()), 0, false});
  return documents_.back();
}

absl::StatusOr<IngestProgress> Session::AppendToDocument(const std::string& name,
                                                         absl::Span<const int> tokens,
                                                         bool commit) {
  FOT_RETURN_IF_ERROR(CheckTokenIds(engine_->config(), tokens));
  {
    absl::MutexLock lock(&stream_mu_);
    FOT_RETURN_IF_ERROR(AppendLocked(name, tokens));
  }
  if (commit) FOT_RETURN_IF_ERROR(Commit());
  return Progress();
}

absl::Status Session::AppendLocked(const std::string& name, absl::Span<const int> tokens) {
  if (documents_.empty() || documents_.back().name != name) {
    return absl::FailedPreconditionError(
        absl::StrCat("document '", name,
                     "' is not the latest document of the session; a session's stream "
                     "is its documents in order, so only the latest one can grow"));
  }
  DocumentInfo& document = documents_.back();
  for (int t : tokens) {
    stream_.push_back(t);
    provenance_.push_back({document.id, document.tokens++, t});
  }
  return absl::OkStatus();
}

absl::Status Session::Commit() {
  absl::MutexLock lock(&mu_);
  return CommitWindows();
}

absl::Status Session::CommitWindows() {
  // The one-shot split of the stream's cache (fot: windows of W once L − 1
  // tokens follow; lambda: blocks of L once a token follows).
  const CommitRule rule = state_.cache->Commits(last_context_length_);
  std::vector<int> tokens;
  std::vector<Provenance> provenance;
  // Only what is due now: a stream that keeps growing must not keep the
  // session from its queries (and its committer from writing) for ever.
  int64_t due = 0;
  {
    absl::ReaderMutexLock stream(&stream_mu_);
    due = static_cast<int64_t>(stream_.size());
  }
  for (;;) {
    const int64_t committed = committed_;
    if (due - committed < rule.size + rule.follow) break;
    {
      // The window is copied out: appends may grow the stream meanwhile.
      absl::ReaderMutexLock stream(&stream_mu_);
      tokens.assign(stream_.begin() + committed, stream_.begin() + committed + rule.size);
      provenance.assign(provenance_.begin() + committed,
                        provenance_.begin() + committed + rule.size);
    }
    FOT_RETURN_IF_ERROR(engine_->ProcessWindow(tokens, &state_, provenance));
    committed_ = committed + rule.size;
    FOT_RETURN_IF_ERROR(HideDeletedDocuments());
  }
  return absl::OkStatus();
}

absl::Status Session::HideDeletedDocuments() {
  // Entries of a deleted document can reach memory after the delete: the rest
  // of a document that was still streaming in, or its last tokens, which were
  // pending then. A commit hides them as they arrive (a store lists its live
  // documents cheaply; the scan of DeleteDocument runs only when one is due).
  std::vector<bool> deleted;
  {
    absl::ReaderMutexLock stream(&stream_mu_);
    for (const DocumentInfo& d : documents_) deleted.push_back(d.deleted);
  }
  if (std::none_of(deleted.begin(), deleted.end(), [](bool d) { return d; })) {
    return absl::OkStatus();  // the common case: no store is asked
  }
  for (const auto& memory : state_.memory) {
    if (memory == nullptr) continue;
    for (int64_t document : memory->store(0).Documents()) {
      if (document < 0 || document >= static_cast<int64_t>(deleted.size()) || !deleted[document]) {
        continue;
      }
      FOT_RETURN_IF_ERROR(memory->DeleteDocument(document));
    }
  }
  return absl::OkStatus();
}

std::vector<DocumentInfo> Session::Documents() const {
  absl::ReaderMutexLock lock(&stream_mu_);
  return documents_;
}

absl::StatusOr<DocumentInfo> Session::Document(const std::string& name) const {
  absl::ReaderMutexLock lock(&stream_mu_);
  for (const DocumentInfo& d : documents_) {
    if (d.name == name) return d;
  }
  return absl::NotFoundError(absl::StrCat("no document '", name, "' in this session"));
}

absl::Status Session::DeleteDocument(const std::string& name) {
  absl::MutexLock lock(&mu_);
  absl::MutexLock stream(&stream_mu_);
  for (DocumentInfo& d : documents_) {
    if (d.name != name) continue;
    if (d.deleted) return absl::NotFoundError(absl::StrCat("document '", name, "' is deleted"));
    d.deleted = true;
    for (const auto& memory : state_.memory) {
      if (memory == nullptr) continue;
      absl::Status status = memory->DeleteDocument(d.id);
      // A document still wholly in the pending tail has no memory entries yet.
      if (!status.ok() && status.code() != absl::StatusCode::kNotFound) return status;
    }
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("no document '", name, "' in this session"));
}

absl::StatusOr<ModelState> Session::QueryState(const std::optional<Retrieval>& retrieval) const {
  FOT_ASSIGN_OR_RETURN(ModelState state, engine_->NewOverlayState(state_));
  state.retrieval = retrieval.value_or(options_.retrieval);
  return state;
}

void Session::QueryInput(absl::Span<const int> extra, std::vector<int>* tokens,
                         std::vector<Provenance>* provenance) const {
  absl::ReaderMutexLock stream(&stream_mu_);
  const int64_t committed = committed_;
  tokens->assign(stream_.begin() + committed, stream_.end());
  provenance->assign(provenance_.begin() + committed, provenance_.end());
  for (size_t i = 0; i < extra.size(); ++i) {
    tokens->push_back(extra[i]);
    provenance->push_back({kQueryDocument, static_cast<int64_t>(i), extra[i]});
  }
}

absl::StatusOr<QueryResult> Session::Generate(absl::Span<const int> question,
                                              const QueryOptions& options) {
  if (question.empty()) return absl::InvalidArgumentError("the question has no tokens");
  if (options.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  FOT_RETURN_IF_ERROR(ValidateSamplingOptions(options.sampling));
  QueryResult result;
  {
    absl::ReaderMutexLock lock(&mu_);
    FOT_ASSIGN_OR_RETURN(ModelState state, QueryState(options.retrieval));
    state.trace = options.trace;
    state.cancelled = options.cancelled;
    std::vector<int> tokens;
    std::vector<Provenance> provenance;
    QueryInput(question, &tokens, &provenance);
    result.prompt_tokens = static_cast<int64_t>(tokens.size());

    const int vocab = engine_->config().vocab_size;
    std::vector<float> logits(vocab);
    const LogitsSink keep_last = [&](int64_t, int64_t rows, const float* l) {
      std::copy(l + (rows - 1) * vocab, l + rows * vocab, logits.begin());
    };
    auto set_trace_top = [&] {
      for (AttentionTrace& t : state.traces) t.top = options.trace_top;
    };
    state.traces.assign(engine_->config().num_hidden_layers, AttentionTrace{});
    set_trace_top();
    FOT_RETURN_IF_ERROR(engine_->Prefill(tokens, last_context_length_, &state, LogitsMode::kLast,
                                         keep_last, provenance));
    // From here on_token decides: a generation stopped by its caller still
    // returns (and keeps) what it generated.
    state.cancelled = nullptr;
    Sampler sampler(options.sampling);
    for (int i = 0; i < options.max_tokens; ++i) {
      GeneratedToken generated{sampler.Sample(logits.data(), vocab), {}};
      if (options.trace) generated.traces = state.traces;
      result.tokens.push_back(generated.token);
      if (options.on_token && !options.on_token(generated, logits.data())) {
        result.stopped_by_caller = true;
        break;
      }
      if (options.stop_at_eos && generated.token == engine_->config().eos_token_id) break;
      if (i + 1 == options.max_tokens) break;
      const Provenance where{kQueryDocument, static_cast<int64_t>(question.size()) + i,
                             generated.token};
      set_trace_top();
      FOT_RETURN_IF_ERROR(engine_->Append({&generated.token, 1}, &state, LogitsMode::kLast,
                                          keep_last, {&where, 1}));
    }
  }
  if (options.keep_turn) {
    // The turn joins the stream as a document of its own, processed by the
    // same window rule as any ingested text.
    std::string name;
    {
      absl::ReaderMutexLock lock(&stream_mu_);
      name = absl::StrCat("turn-", documents_.size());
    }
    FOT_RETURN_IF_ERROR(StartDocument(name).status());
    std::vector<int> turn(question.begin(), question.end());
    turn.insert(turn.end(), result.tokens.begin(), result.tokens.end());
    FOT_RETURN_IF_ERROR(AppendToDocument(name, turn).status());
  }
  return result;
}

absl::StatusOr<ScoreResult> Session::Score(absl::Span<const int> context,
                                           absl::Span<const int> continuation,
                                           const std::optional<Retrieval>& retrieval,
                                           std::function<bool()> cancelled) {
  if (continuation.empty()) return absl::InvalidArgumentError("the continuation has no tokens");
  absl::ReaderMutexLock lock(&mu_);
  std::vector<int> extra(context.begin(), context.end());
  extra.insert(extra.end(), continuation.begin(), continuation.end());
  std::vector<int> tokens;
  std::vector<Provenance> provenance;
  QueryInput(extra, &tokens, &provenance);
  const int64_t first_scored = static_cast<int64_t>(tokens.size() - continuation.size());
  if (first_scored == 0) {
    // The token before the continuation is committed memory, which a query
    // does not rerun.
    return absl::InvalidArgumentError(
        "nothing in the pending text precedes the continuation: give a context");
  }
  FOT_ASSIGN_OR_RETURN(ModelState state, QueryState(retrieval));
  state.cancelled = std::move(cancelled);
  // Row p of the query input predicts token p + 1: rows [first_scored − 1,
  // end − 1) score the continuation.
  ScoreResult result;
  const int vocab = engine_->config().vocab_size;
  const LogitsSink score = [&](int64_t first, int64_t rows, const float* l) {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t position = first + r;
      if (position < first_scored - 1 || position + 1 >= static_cast<int64_t>(tokens.size())) {
        continue;
      }
      const float* x = l + r * vocab;
      const float top = x[ArgMax(x, vocab)];
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(x[v] - top));
      const double log_prob = x[tokens[position + 1]] - top - std::log(sum);
      result.token_log_probs.push_back(static_cast<float>(log_prob));
      result.log_likelihood += log_prob;
    }
  };
  FOT_RETURN_IF_ERROR(
      engine_->Prefill(tokens, last_context_length_, &state, LogitsMode::kAll, score, provenance));
  result.perplexity = std::exp(-result.log_likelihood / continuation.size());
  return result;
}

absl::StatusOr<std::vector<AttentionTrace>> Session::Search(
    absl::Span<const int> text, int top, const std::optional<Retrieval>& retrieval,
    std::function<bool()> cancelled) {
  if (text.empty()) return absl::InvalidArgumentError("the search text has no tokens");
  if (top < 1) return absl::InvalidArgumentError("top must be at least 1");
  absl::ReaderMutexLock lock(&mu_);
  FOT_ASSIGN_OR_RETURN(ModelState state, QueryState(retrieval));
  state.cancelled = std::move(cancelled);
  state.trace = true;
  state.traces.assign(engine_->config().num_hidden_layers, AttentionTrace{});
  for (AttentionTrace& t : state.traces) t.top = top;
  std::vector<int> tokens;
  std::vector<Provenance> provenance;
  QueryInput(text, &tokens, &provenance);
  FOT_RETURN_IF_ERROR(engine_->Prefill(tokens, last_context_length_, &state, LogitsMode::kNone,
                                       kIgnoreLogits, provenance));
  return state.traces;
}

MemoryStats Session::Stats() const {
  absl::ReaderMutexLock lock(&mu_);
  return GetMemoryStats(state_);
}

absl::StatusOr<std::vector<MemoryEntry>> Session::ListEntries(int layer, int64_t offset,
                                                              int64_t limit) const {
  absl::ReaderMutexLock lock(&mu_);
  return ListMemoryEntries(state_, layer, offset, limit);
}

absl::StatusOr<std::vector<MemoryEntry>> Session::EntryContext(int layer, int64_t id,
                                                               int radius) const {
  absl::ReaderMutexLock lock(&mu_);
  return MemoryEntryContext(state_, layer, id, radius);
}

std::vector<int> Session::StreamTokens(int64_t first, int64_t count) const {
  absl::ReaderMutexLock lock(&stream_mu_);
  const int64_t begin = std::clamp<int64_t>(first, 0, stream_.size());
  const int64_t end =
      std::clamp<int64_t>(first + std::max<int64_t>(count, 0), begin, stream_.size());
  return std::vector<int>(stream_.begin() + begin, stream_.begin() + end);
}

IngestProgress Session::Progress() const {
  absl::ReaderMutexLock lock(&stream_mu_);
  return {documents_.empty() ? 0 : documents_.back().tokens, static_cast<int64_t>(stream_.size()),
          committed_};
}

absl::Status Session::Save(const std::string& dir, Env* env) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::ReaderMutexLock stream(&stream_mu_);
  if (env->Exists(dir) && !env->Exists(dir + "/session.json")) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " exists and is not a saved session; refusing to replace it"));
  }
  FOT_ASSIGN_OR_RETURN(const std::string staging, MakeStagingDirectory(*env, dir));
  if (absl::Status written = WriteLocked(staging, *env); !written.ok()) {
    env->RemoveAll(staging).IgnoreError();  // the error to report is `written`
    return written;
  }
  return ReplaceDirectory(*env, staging, dir);
}

absl::Status Session::WriteLocked(const std::string& staging, Env& env) const {
  FOT_RETURN_IF_ERROR(WriteMemory(engine_->transformer(), state_, staging + "/memory", env));
  // A stream whose cache is saved with it (lambda) records its attention.
  const bool with_cache = state_.cache->persistent();
  nlohmann::json session;
  session["format"] = with_cache ? kFormatLambda : kFormatFot;
  if (with_cache) session["attention"] = AttentionJson(options_.attention);
  session["index"] = DescribeOptions(options_.memory);
  session["retrieval"] = DescribeRetrieval(options_.retrieval);
  session["last_context_length"] = last_context_length_;
  session["committed"] = committed_.load();
  for (const DocumentInfo& d : documents_) {
    session["documents"].push_back({{"id", d.id},
                                    {"name", d.name},
                                    {"first", d.first},
                                    {"tokens", d.tokens},
                                    {"deleted", d.deleted}});
  }
  FOT_RETURN_IF_ERROR(WriteFile(env, staging + "/session.json", session.dump(1)));
  const uint64_t count = stream_.size();
  std::string stream(reinterpret_cast<const char*>(&count), sizeof(count));
  stream.append(reinterpret_cast<const char*>(provenance_.data()), count * sizeof(Provenance));
  return WriteFile(env, staging + "/stream.bin", stream);
}

absl::StatusOr<std::unique_ptr<Session>> Session::Load(const Engine* engine,
                                                       const std::string& dir) {
  std::ifstream in(dir + "/session.json");
  if (!in) return absl::NotFoundError(absl::StrCat(dir, ": no saved session (no session.json)"));
  nlohmann::json session = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (session.is_discarded() || !session.is_object() ||
      (session.value("format", "") != kFormatFot && session.value("format", "") != kFormatLambda)) {
    return absl::DataLossError(absl::StrCat(dir, "/session.json is not a fotserve session"));
  }
  SessionOptions options;
  FOT_RETURN_IF_ERROR(ParseIndexSpec(session.value("index", ""), &options.memory));
  FOT_ASSIGN_OR_RETURN(options.retrieval, ParseRetrieval(session.value("retrieval", "")));
  options.last_context_length = session.value("last_context_length", 0);
  // Sessions saved before lambda attention existed have no "attention": fot.
  absl::StatusOr<AttentionOptions> attention =
      AttentionFromJson(session.value("attention", nlohmann::json()), engine->config());
  if (!attention.ok()) {
    return absl::DataLossError(
        absl::StrCat(dir, "/session.json: bad attention options: ", attention.status().message()));
  }
  options.attention = *attention;
  FOT_ASSIGN_OR_RETURN(ModelState state,
                       LoadMemory(engine->transformer(), dir + "/memory", options.attention));
  auto loaded = std::unique_ptr<Session>(new Session(engine, options, std::move(state)));
  if (absl::Status s = CheckLastContextLength(loaded->last_context_length_,
                                              engine->config().max_position_embeddings);
      !s.ok()) {
    return absl::DataLossError(absl::StrCat(dir, "/session.json: ", s.message()));
  }

  std::ifstream stream(dir + "/stream.bin", std::ios::binary);
  uint64_t count = 0;
  stream.read(reinterpret_cast<char*>(&count), sizeof(count));
  const uint64_t bytes = std::filesystem::exists(dir + "/stream.bin")
                             ? std::filesystem::file_size(dir + "/stream.bin")
                             : 0;
  if (!stream || bytes != sizeof(count) + count * sizeof(Provenance)) {
    return absl::DataLossError(absl::StrCat(dir, "/stream.bin is missing or truncated"));
  }
  absl::MutexLock lock(&loaded->mu_);
  absl::ReleasableMutexLock stream_lock(&loaded->stream_mu_);
  loaded->provenance_.resize(count);
  stream.read(reinterpret_cast<char*>(loaded->provenance_.data()),
              static_cast<std::streamsize>(count * sizeof(Provenance)));
  for (const Provenance& p : loaded->provenance_) loaded->stream_.push_back(p.token);
  loaded->committed_ = session.value("committed", int64_t{0});
  if (loaded->committed_ < 0 || loaded->committed_ > static_cast<int64_t>(count) ||
      loaded->state_.memory.empty()) {
    return absl::DataLossError(absl::StrCat(dir, ": committed count does not fit the stream"));
  }
  // LoadMemory checked that a saved cache holds tokens_seen tokens.
  if (loaded->state_.cache->persistent() && loaded->state_.tokens_seen != loaded->committed_) {
    return absl::DataLossError(absl::StrCat(dir, ": the saved ", loaded->state_.cache->kind(),
                                            " state holds ", loaded->state_.tokens_seen,
                                            " tokens, the session ", loaded->committed_.load(),
                                            " committed ones"));
  }
  for (const auto& d : session["documents"]) {
    loaded->documents_.push_back({d.value("id", int64_t{0}), d.value("name", ""),
                                  d.value("first", int64_t{0}), d.value("tokens", int64_t{0}),
                                  d.value("deleted", false)});
  }
  loaded->state_.retrieval = options.retrieval;
  stream_lock.Release();
  FOT_RETURN_IF_ERROR(
      loaded->HideDeletedDocuments());  // saves from before the commit rule hid them
  return loaded;
}

absl::StatusOr<SessionChanges> Session::ChangesSince(const SessionCursor& since,
                                                     bool memory) const {
  // mu_ (shared) only for the memory, so that a stream-only read does not
  // wait for a commit in progress.
  std::optional<absl::ReaderMutexLock> state_lock;
  if (memory) state_lock.emplace(&mu_);
  absl::ReaderMutexLock lock(&stream_mu_);
  SessionChanges changes;
  changes.end = {static_cast<int64_t>(stream_.size()), since.entries};
  if (memory && !memory_layers_.empty()) {
    changes.end.entries = state_.memory[memory_layers_[0]]->size();
  }
  if (since.stream < 0 || since.stream > changes.end.stream || since.entries < 0 ||
      since.entries > changes.end.entries) {
    return absl::InternalError("the storage cursor is beyond the session");
  }
  changes.stream.assign(provenance_.begin() + since.stream, provenance_.end());
  changes.documents = documents_;
  if (!memory) return changes;
  FOT_RETURN_IF_ERROR(ReadMemoryChanges(since, &changes));
  return changes;
}

absl::Status Session::ReadMemoryChanges(const SessionCursor& since, SessionChanges* changes) const {
  const int64_t n = changes->end.entries - since.entries;
  for (int layer : memory_layers_) {
    const KvMemory& memory = *state_.memory[layer];
    const int64_t row = static_cast<int64_t>(memory.head_dim()) * n;
    std::vector<float> keys(row * memory.num_kv_heads()), values(keys.size());
    for (int h = 0; h < memory.num_kv_heads(); ++h) {
      FOT_RETURN_IF_ERROR(memory.ReadKeys(h, since.entries, n, keys.data() + h * row));
      FOT_RETURN_IF_ERROR(memory.ReadValues(h, since.entries, n, values.data() + h * row));
    }
    changes->keys.push_back(std::move(keys));
    changes->values.push_back(std::move(values));
  }
  changes->committed = committed_;
  changes->memory = true;
  if (!state_.cache->persistent()) return absl::OkStatus();
  for (int layer = 0; layer < engine_->config().num_hidden_layers; ++layer) {
    std::ostringstream out;
    FOT_RETURN_IF_ERROR(state_.cache->Write(layer, out));
    const std::string bytes = out.str();
    const uint64_t size = bytes.size();
    changes->cache_state.append(reinterpret_cast<const char*>(&size), sizeof(size));
    changes->cache_state.append(bytes);
  }
  return absl::OkStatus();
}

int64_t Session::memory_entries() const {
  absl::ReaderMutexLock lock(&mu_);
  return memory_layers_.empty() ? 0 : state_.memory[memory_layers_[0]]->size();
}

int64_t Session::memory_index_shape() const {
  absl::ReaderMutexLock lock(&mu_);
  int64_t shape = 0;
  for (int layer : memory_layers_) {
    const KvMemory& memory = *state_.memory[layer];
    for (int h = 0; h < memory.num_kv_heads(); ++h) {
      const KvStore& store = memory.store(h);
      if (store.index_built()) shape += 1 + store.index_lists();
    }
  }
  return shape;
}

absl::Status Session::WriteCheckpoint(const std::string& dir, Env& env, int64_t entries) const {
  absl::ReaderMutexLock lock(&mu_);
  const int64_t held = memory_layers_.empty() ? 0 : state_.memory[memory_layers_[0]]->size();
  if (held != entries) {
    return absl::AbortedError(absl::StrCat("the memory holds ", held, " entries, not ", entries));
  }
  return WriteMemory(engine_->transformer(), state_, dir, env);
}

absl::Status Session::RestoreCache(const std::string& cache_state) {
  if (!state_.cache->persistent()) {
    if (!cache_state.empty()) return absl::DataLossError("a fot session has no stored cache");
    state_.tokens_seen = committed_;
    return absl::OkStatus();
  }
  // A session that never wrote (created, then a crash) has no stored cache:
  // its fresh one is right.
  if (cache_state.empty() && committed_ == 0) return absl::OkStatus();
  std::string_view rest = cache_state;
  for (int layer = 0; layer < engine_->config().num_hidden_layers; ++layer) {
    uint64_t size = 0;
    if (rest.size() < sizeof(size)) return absl::DataLossError("the stored cache is truncated");
    std::memcpy(&size, rest.data(), sizeof(size));
    rest.remove_prefix(sizeof(size));
    if (rest.size() < size) return absl::DataLossError("the stored cache is truncated");
    std::istringstream in(std::string(rest.substr(0, size)));
    rest.remove_prefix(size);
    const absl::Status read = state_.cache->Read(layer, in, committed_);
    if (!read.ok()) return absl::DataLossError(absl::StrCat("the stored cache: ", read.message()));
  }
  state_.tokens_seen = committed_;
  return absl::OkStatus();
}

absl::Status Session::RestoreEntries(int index, int64_t first, const float* keys,
                                     const float* values, int64_t count) {
  if (index < 0 || index >= static_cast<int>(memory_layers_.size())) {
    return absl::DataLossError("a stored entry names no memory layer");
  }
  KvMemory& memory = *state_.memory[memory_layers_[index]];
  if (first != memory.size() ||
      EntryPosition(first + count) > static_cast<int64_t>(stream_.size())) {
    return absl::DataLossError(absl::StrCat("stored entries [", first, ", ", first + count,
                                            ") do not continue the memory of ", memory.size(),
                                            " entries within the stream"));
  }
  // [kv_head][entry][head_dim] as stored, [entry][kv_head][head_dim] to append.
  const int kv = memory.num_kv_heads(), hd = memory.head_dim();
  std::vector<float> k(count * kv * hd), v(k.size());
  for (int h = 0; h < kv; ++h) {
    for (int64_t i = 0; i < count; ++i) {
      std::memcpy(&k[(i * kv + h) * hd], keys + (h * count + i) * hd, hd * sizeof(float));
      std::memcpy(&v[(i * kv + h) * hd], values + (h * count + i) * hd, hd * sizeof(float));
    }
  }
  const Provenance* provenance = provenance_.data() + EntryPosition(first);
  return memory.Append(k.data(), v.data(), provenance, count);
}

absl::StatusOr<std::unique_ptr<Session>> Session::Restore(const Engine* engine,
                                                          StoredSession stored,
                                                          const EntrySource& entries) {
  std::unique_ptr<Session> session;
  if (stored.checkpoint_dir.empty()) {
    FOT_ASSIGN_OR_RETURN(session, Create(engine, stored.options));
  } else {
    FOT_ASSIGN_OR_RETURN(ModelState state, LoadMemory(engine->transformer(), stored.checkpoint_dir,
                                                      stored.options.attention));
    for (const auto& memory : state.memory) {
      if (memory != nullptr &&
          memory->options() != ResolveMemoryOptions(stored.options.memory, memory->head_dim())) {
        return absl::DataLossError("the memory checkpoint has other index options");
      }
    }
    session.reset(new Session(engine, stored.options, std::move(state)));
  }
  absl::MutexLock lock(&session->mu_);
  absl::ReleasableMutexLock stream_lock(&session->stream_mu_);
  if (stored.committed < 0 || stored.committed > static_cast<int64_t>(stored.stream.size())) {
    return absl::DataLossError("the stored commit point is beyond the stored stream");
  }
  session->provenance_ = std::move(stored.stream);
  for (const Provenance& p : session->provenance_) session->stream_.push_back(p.token);
  session->documents_ = std::move(stored.documents);
  session->committed_ = stored.committed;
  const int64_t from = session->memory_layers_.empty()
                           ? 0
                           : session->state_.memory[session->memory_layers_[0]]->size();
  if (from > stored.entries) return absl::DataLossError("the checkpoint is ahead of the store");
  FOT_RETURN_IF_ERROR(entries(
      from, [&](int index, int64_t first, const float* keys, const float* values, int64_t count)
                ABSL_NO_THREAD_SAFETY_ANALYSIS {
                  return session->RestoreEntries(index, first, keys, values, count);
                }));
  for (int layer : session->memory_layers_) {
    if (session->state_.memory[layer]->size() != stored.entries) {
      return absl::DataLossError(absl::StrCat("memory layer ", layer, " has ",
                                              session->state_.memory[layer]->size(),
                                              " stored entries, the session ", stored.entries));
    }
  }
  FOT_RETURN_IF_ERROR(session->RestoreCache(stored.cache_state));
  stream_lock.Release();
  FOT_RETURN_IF_ERROR(session->HideDeletedDocuments());
  // Windows acknowledged (their tokens stored) but not yet committed when the
  // server stopped are committed now.
  FOT_RETURN_IF_ERROR(session->CommitWindows());
  return session;
}

}  // namespace fot
