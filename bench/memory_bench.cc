// Memory benchmark (issue 3) on the random mid-size LongLLaMA model of
// engine_bench (hidden 512, 8 layers, 8 heads, 8 kv heads, intermediate 1376,
// vocab 32000, W 512, memory layers 3 and 6; head_dim 64, so 2 x 8 = 16
// stores): dense vs knn:K retrieval over flat, HNSW and IVF stores as memory
// grows to 8k, 32k, 128k and 1M tokens.
//
// How the memories are built. Running the model over 1M tokens is far too slow
// here, so the model runs once over a real prefix (--prefix_tokens random token
// ids, dense retrieval, flat f32 memory) and the keys and values its memory
// layers stored are read back (KvStore::ReadKeys/ReadValues). The last
// --holdout rows of that prefix are kept aside as queries (recall, FAISS
// overhead); the rest are the fill source. Each benchmark memory is filled to
// its target size with KvMemory::Append, appending the source rows in order
// and then again and again; every repeat after the first gets a small
// deterministic perturbation (each key/value row + --perturbation x its RMS x
// pseudo-Gaussian noise), so that no two entries are identical.
//
// What is measured, at each memory size, per retrieval mode:
//   Window/MODE/N    Engine::Prefill of one more window of W tokens as the
//                    last (cached) window, LogitsMode::kLast: the window reads
//                    the memory but does not grow it (cache cleared between
//                    iterations). tokens_per_s.
//   Generate/MODE/N  per-token latency of Engine::Append of single tokens after
//                    a 64-token prefill (Generate/empty: memory empty).
//   Recall/KIND/N    recall@K of the store's Search against exact top-K over the
//                    same stored keys (BLAS), queries = held-out real keys.
//   Overhead/KIND/N  KvStore::Search of one window's queries (512) on one store
//                    versus a bare FAISS index of the same kind built from the
//                    same keys, same queries and k.
//   Bytes            KvMemory::bytes() per stored token.
// Combinations that take too long on this machine are skipped (flags below)
// and, where the cost is linear in the memory size, extrapolated in the
// summary and marked so.
//
//   memory_bench [--max_memory_tokens=N] [--top_k=K] [--hnsw_max_tokens=N] ...
//                [Google Benchmark flags]   (--help lists this tool's flags)
//
// This file is the runner; the flags are in memory_bench_flags.{h,cc}, the
// figures the benchmarks record and the summary printed from them in
// memory_bench_summary.{h,cc}. All the state of a run lives in one Context,
// which Main creates and the registered benchmarks hold by reference.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/command_line.h"
#include "base/half_float.h"
#include "bench/memory_bench_flags.h"
#include "bench/memory_bench_summary.h"
#include "bench/mid_size_model.h"
#include "benchmark/benchmark.h"
#include "memory/kv_memory.h"
#include "memory/memory_options.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/fot_stream_cache.h"

namespace fot::memory_bench {
namespace {

using faiss_idx = faiss::Index::idx_t;

// ---------------------------------------------------------------- model ----

std::vector<int> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids(n);
  for (int& id : ids) id = static_cast<int>(rng() % vocab);
  return ids;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const auto kIgnoreLogits = [](int64_t, int64_t, const float*) {};

// -------------------------------------------------------------- context ----

// Real keys/values of one memory layer: [rows, kv_heads, head_dim].
struct LayerRows {
  std::vector<float> keys, values;
};

// Everything one run shares: the engine, the flags, the figures the
// benchmarks record for the summary, the real rows and the memories built
// from them. Main owns it; the registered benchmarks hold it by reference.
class Context {
 public:
  // `flags` and `figures` must outlive the context.
  Context(const Engine* engine, const Flags& flags, Figures* figures)
      : engine_(engine), flags_(flags), figures_(figures) {
    const ModelConfig& c = engine->config();
    kv_heads_ = c.num_key_value_heads;
    head_dim_ = c.head_dim();
    row_ = static_cast<int64_t>(kv_heads_) * head_dim_;
    for (int l = 0; l < c.num_hidden_layers; ++l) {
      if (c.IsMemoryLayer(l)) mem_layers_.push_back(l);
    }
  }

  const Engine& engine() const { return *engine_; }
  const Flags& flags() const { return flags_; }
  Figures& figures() { return *figures_; }
  const std::vector<int>& mem_layers() const { return mem_layers_; }
  int head_dim() const { return head_dim_; }
  int kv_heads() const { return kv_heads_; }
  int64_t source_rows() const { return source_rows_; }

  // Runs the model over the prefix and reads its memory back.
  absl::Status CollectRealRows() {
    const ModelConfig& c = engine_->config();
    MemoryOptions options;
    options.index_kind = IndexKind::kFlat;
    options.dtype = StorageType::kFloat32;  // exact copies of the engine's keys/values
    absl::StatusOr<ModelState> state = engine_->NewState(options);
    if (!state.ok()) return state.status();
    prefix_tokens_ = RandomTokens(flags_.prefix_tokens, c.vocab_size, 7);
    const double t0 = Now();
    // last_context_length 1: every window but the last token goes to memory.
    absl::Status s = engine_->Prefill(prefix_tokens_, 1, &*state, LogitsMode::kNone, kIgnoreLogits);
    if (!s.ok()) return s;
    figures_->prefix_seconds = Now() - t0;
    const int64_t rows = state->memory[mem_layers_[0]]->size();
    source_rows_ = rows - flags_.holdout;
    figures_->source_rows = source_rows_;
    for (int l : mem_layers_) {
      const KvMemory& memory = *state->memory[l];
      LayerRows lr;
      lr.keys.resize(rows * row_);
      lr.values.resize(rows * row_);
      std::vector<float> buf(rows * head_dim_);
      for (int h = 0; h < kv_heads_; ++h) {
        if (absl::Status st = memory.store(h).ReadKeys(0, rows, buf.data()); !st.ok()) return st;
        for (int64_t i = 0; i < rows; ++i) {
          std::memcpy(&lr.keys[i * row_ + h * head_dim_], &buf[i * head_dim_],
                      head_dim_ * sizeof(float));
        }
        if (absl::Status st = memory.store(h).ReadValues(0, rows, buf.data()); !st.ok()) {
          return st;
        }
        for (int64_t i = 0; i < rows; ++i) {
          std::memcpy(&lr.values[i * row_ + h * head_dim_], &buf[i * head_dim_],
                      head_dim_ * sizeof(float));
        }
      }
      layers_.push_back(std::move(lr));
    }
    std::fprintf(stderr,
                 "[memory_bench] prefix of %d tokens through the model (dense, flat f32): %.1f s; "
                 "%lld real rows per memory layer: %lld fill source + %d held-out queries\n",
                 flags_.prefix_tokens, figures_->prefix_seconds, static_cast<long long>(rows),
                 static_cast<long long>(source_rows_), flags_.holdout);
    return absl::OkStatus();
  }

  // Held-out keys of memory layer index li (into mem_layers), kv head h:
  // [count, head_dim], rows [source_rows, source_rows + count).
  std::vector<float> Queries(int li, int h, int count) const {
    std::vector<float> q(static_cast<size_t>(count) * head_dim_);
    for (int i = 0; i < count; ++i) {
      std::memcpy(&q[i * head_dim_], &layers_[li].keys[(source_rows_ + i) * row_ + h * head_dim_],
                  head_dim_ * sizeof(float));
    }
    return q;
  }

  // Appends fill rows [memory->size(), target) of memory layer li.
  absl::Status Fill(int li, KvMemory* memory, int64_t target) const {
    constexpr int64_t kChunk = 16384;
    std::vector<float> keys, values;
    std::vector<Provenance> provenance;
    for (int64_t first = memory->size(); first < target;) {
      const int64_t n = std::min(kChunk, target - first);
      keys.resize(n * row_);
      values.resize(n * row_);
      provenance.resize(n);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t id = first + i;
        const int64_t src = id % source_rows_;
        const int64_t repeat = id / source_rows_;
        std::memcpy(&keys[i * row_], &layers_[li].keys[src * row_], row_ * sizeof(float));
        std::memcpy(&values[i * row_], &layers_[li].values[src * row_], row_ * sizeof(float));
        provenance[i] = {0, id, prefix_tokens_[src]};
        if (repeat > 0) {
          for (int h = 0; h < kv_heads_; ++h) {
            Perturb(&keys[i * row_ + h * head_dim_], id, h, 0);
            Perturb(&values[i * row_ + h * head_dim_], id, h, 1);
          }
        }
      }
      if (absl::Status s = memory->Append(keys.data(), values.data(), provenance.data(), n);
          !s.ok()) {
        return s;
      }
      first += n;
    }
    return absl::OkStatus();
  }

  // The benchmark state of a kind, grown to `size` entries per store.
  absl::StatusOr<ModelState*> Ensure(Kind kind, int64_t size) {
    // Kinds that will not be needed at this size any more give their memory back.
    for (int k = 0; k < kNumKinds; ++k) {
      if (states_[k] && KindMax(flags_, static_cast<Kind>(k)) < size) {
        std::fprintf(stderr, "[memory_bench] releasing the %s memory\n", kKindNames[k]);
        states_[k].reset();
      }
    }
    if (!states_[kind]) {
      absl::StatusOr<ModelState> s = engine_->NewState(OptionsFor(flags_, kind));
      if (!s.ok()) return s.status();
      states_[kind] = std::make_unique<ModelState>(*std::move(s));
    }
    ModelState* state = states_[kind].get();
    const int64_t have = state->memory[mem_layers_[0]]->size();
    if (have < size) {
      const double t0 = Now();
      for (size_t li = 0; li < mem_layers_.size(); ++li) {
        if (absl::Status s = Fill(li, state->memory[mem_layers_[li]].get(), size); !s.ok()) {
          return s;
        }
      }
      const double seconds = Now() - t0;
      figures_->fill[kind].entries += size - have;
      figures_->fill[kind].seconds += seconds;
      const int64_t stores = static_cast<int64_t>(mem_layers_.size()) * kv_heads_;
      if (kind == kHnsw) {
        const int64_t graph = size - std::max<int64_t>(have, kHnswBuildSize);
        if (graph > 0) {
          figures_->hnsw_graph_inserts.entries += graph;
          figures_->hnsw_graph_inserts.seconds += seconds;
        }
      }
      std::fprintf(stderr,
                   "[memory_bench] filled %s memory %lld -> %lld tokens (%lld stores): %.1f s, "
                   "%.0f vectors/s over all stores\n",
                   kKindNames[kind], static_cast<long long>(have), static_cast<long long>(size),
                   static_cast<long long>(stores), seconds, (size - have) * stores / seconds);
      int64_t overflow = 0;
      for (int l : mem_layers_) {
        for (int h = 0; h < kv_heads_; ++h) overflow += state->memory[l]->store(h).overflow_size();
      }
      figures_->overflow[kind][size] = overflow;
      RecordBytes(absl::StrFormat("%s f16", kKindNames[kind]), *state, size);
    }
    return state;
  }

  void RecordBytes(const std::string& name, const ModelState& state, int64_t size) {
    Figures::Bytes b;
    for (int l : mem_layers_) {
      const double per_token = static_cast<double>(state.memory[l]->bytes()) / size;
      b.per_layer.push_back(per_token);
      b.total += per_token;
    }
    figures_->bytes[name][size] = b;
  }

  // A memory for bytes/token only: flat f32.
  absl::Status MeasureFlatF32Bytes(int64_t size) {
    MemoryOptions o = OptionsFor(flags_, kFlat);
    o.dtype = StorageType::kFloat32;
    absl::StatusOr<ModelState> s = engine_->NewState(o);
    if (!s.ok()) return s.status();
    for (size_t li = 0; li < mem_layers_.size(); ++li) {
      if (absl::Status st = Fill(li, s->memory[mem_layers_[li]].get(), size); !st.ok()) return st;
    }
    RecordBytes("flat f32", *s, size);
    return absl::OkStatus();
  }

  // A state with empty memory (for the empty-memory baselines).
  ModelState* Empty() {
    if (!empty_)
      empty_ = std::make_unique<ModelState>(*engine_->NewState(OptionsFor(flags_, kIvf)));
    return empty_.get();
  }

 private:
  // x += perturbation * rms(x) * N(0,1)-like noise, deterministic in (id, head, which).
  void Perturb(float* x, int64_t id, int h, int which) const {
    double ss = 0;
    for (int j = 0; j < head_dim_; ++j) ss += double(x[j]) * x[j];
    const float scale = static_cast<float>(flags_.perturbation * std::sqrt(ss / head_dim_));
    uint64_t z = (static_cast<uint64_t>(id) * 16 + h) * 2 + which;
    for (int j = 0; j < head_dim_; ++j) {
      // splitmix64, then a sum of 4 uniforms (approximately Gaussian, var 1)
      float sum = 0;
      for (int u = 0; u < 2; ++u) {
        z += 0x9E3779B97F4A7C15ull;
        uint64_t r = z;
        r = (r ^ (r >> 30)) * 0xBF58476D1CE4E5B9ull;
        r = (r ^ (r >> 27)) * 0x94D049BB133111EBull;
        r ^= r >> 31;
        sum += static_cast<float>(r & 0xFFFFFFFF) * (1.0f / 4294967296.0f) +
               static_cast<float>(r >> 32) * (1.0f / 4294967296.0f);
      }
      x[j] += scale * (sum - 2.0f) * 1.7320508f;  // var of sum of 4 U(0,1) is 1/3
    }
  }

  const Engine* engine_;
  const Flags& flags_;
  Figures* figures_;
  int kv_heads_ = 0, head_dim_ = 0;
  int64_t row_ = 0;
  std::vector<int> mem_layers_;
  std::vector<int> prefix_tokens_;
  int64_t source_rows_ = 0;
  std::vector<LayerRows> layers_;  // [memory layer index]
  std::unique_ptr<ModelState> states_[kNumKinds];
  std::unique_ptr<ModelState> empty_;
};

void SetRetrieval(ModelState* state, Mode mode, int top_k) {
  state->retrieval = Retrieval{};
  if (mode != kDense) {
    state->retrieval.mode = Retrieval::Mode::kKnn;
    state->retrieval.top_k = top_k;
  }
}

void ClearCaches(ModelState* state) {
  static_cast<FotStreamCache*>(state->cache.get())->DropWindow();  // every state here is fot
}

bool Fail(benchmark::State& st, const absl::Status& s) {
  if (s.ok()) return false;
  st.SkipWithError(std::string(s.message()).c_str());
  return true;
}

// ------------------------------------------------------------ benchmarks ---

// One window of W tokens as the last (cached) window: reads memory, adds none.
void RunWindow(benchmark::State& st, Context& context, ModelState* state, Mode mode) {
  const Engine& engine = context.engine();
  const int w = engine.config().max_position_embeddings;
  const std::vector<int> tokens = RandomTokens(w, engine.config().vocab_size, 11);
  SetRetrieval(state, mode, context.flags().top_k);
  for (auto _ : st) {
    ClearCaches(state);
    if (Fail(st, engine.Prefill(tokens, w, state, LogitsMode::kLast, kIgnoreLogits))) break;
  }
  ClearCaches(state);
  st.counters["tokens_per_s"] =
      benchmark::Counter(w, benchmark::Counter::kIsIterationInvariantRate);
}

// Single-token Appends after a 64-token prefill; returns ms per token.
double RunGenerate(benchmark::State& st, Context& context, ModelState* state, Mode mode) {
  const Engine& engine = context.engine();
  const int vocab = engine.config().vocab_size;
  const std::vector<int> prompt = RandomTokens(64, vocab, 13);
  SetRetrieval(state, mode, context.flags().top_k);
  ClearCaches(state);
  if (Fail(st, engine.Prefill(prompt, 64, state, LogitsMode::kLast, kIgnoreLogits))) return 0;
  int token = 5;
  // One untimed token: scratch buffers reach their size.
  if (Fail(st, engine.Append({&token, 1}, state, LogitsMode::kLast, kIgnoreLogits))) return 0;
  std::vector<double> times;
  for (auto _ : st) {
    token = (token * 7 + 3) % vocab;
    const double t0 = Now();
    if (Fail(st, engine.Append({&token, 1}, state, LogitsMode::kLast, kIgnoreLogits))) break;
    times.push_back(Now() - t0);
  }
  ClearCaches(state);
  if (times.empty()) return 0;
  // The median: robust to the other jobs' bursts on the shared cores.
  std::sort(times.begin(), times.end());
  const double median = times.size() % 2 == 1
                            ? times[times.size() / 2]
                            : (times[times.size() / 2 - 1] + times[times.size() / 2]) / 2;
  st.counters["median_ms"] = median * 1e3;
  return median * 1e3;
}

// recall@K of the store's Search against exact top-K over its own stored keys.
void RunRecall(benchmark::State& st, Context& context, Kind kind, int64_t size) {
  absl::StatusOr<ModelState*> state = context.Ensure(kind, size);
  if (!state.ok()) {
    Fail(st, state.status());
    return;
  }
  const Flags& flags = context.flags();
  const int k = flags.top_k, nq = flags.recall_queries, d = context.head_dim();
  double strict = 0, tie = 0, wide = 0;
  int64_t count = 0;
  bool built = true;
  for (auto _ : st) {
    strict = tie = wide = 0;
    count = 0;
    const std::vector<int>& layers = context.mem_layers();
    for (size_t li = 0; li < layers.size(); ++li) {
      for (int h = 0; h < context.kv_heads(); ++h) {
        const KvStore& store = (*state)->memory[layers[li]]->store(h);
        built = built && store.index_built();
        const std::vector<float> q = context.Queries(li, h, nq);
        std::vector<float> keys(size * d);
        if (Fail(st, store.ReadKeys(0, size, keys.data()))) return;
        std::vector<float> exact_d(nq * k), got_d(nq * k);
        std::vector<int64_t> exact_i(nq * k), got_i(nq * k);
        faiss::knn_inner_product(q.data(), keys.data(), d, nq, size, k, exact_d.data(),
                                 exact_i.data());
        if (Fail(st, store.Search(q.data(), nq, d, k, nullptr, got_i.data(), got_d.data()))) {
          return;
        }
        // The same with 2K candidates (the store re-scores them exactly and
        // sorts, so the first K are the best K it found).
        std::vector<float> wide_d(nq * 2 * k);
        std::vector<int64_t> wide_i(nq * 2 * k);
        if (Fail(st, store.Search(q.data(), nq, d, 2 * k, nullptr, wide_i.data(), wide_d.data()))) {
          return;
        }
        for (int i = 0; i < nq; ++i) {
          std::set<int64_t> truth(&exact_i[i * k], &exact_i[i * k] + k);
          const float kth = exact_d[i * k + k - 1];
          int hit = 0, good = 0;
          for (int j = 0; j < k; ++j) {
            const int64_t id = got_i[i * k + j];
            if (id < 0) continue;
            hit += truth.count(id);
            good += got_d[i * k + j] >= kth - 1e-4f * std::max(1.0f, std::fabs(kth));
          }
          int wide_hit = 0;
          for (int j = 0; j < k; ++j) wide_hit += truth.count(wide_i[i * 2 * k + j]);
          wide += static_cast<double>(wide_hit) / k;
          strict += static_cast<double>(hit) / k;
          tie += static_cast<double>(good) / k;
          ++count;
        }
      }
    }
  }
  Figures::Recall r;
  r.strict = strict / count;
  r.tie_aware = tie / count;
  r.wide = wide / count;
  r.built = built;
  r.overflow = context.figures().overflow[kind][size];
  context.figures().recall[kind][size] = r;
  st.counters["recall"] = r.strict;
  st.counters["recall_tie_aware"] = r.tie_aware;
  st.counters["recall_2k_candidates"] = r.wide;
}

// Inner product -> L2 reduction of kv_store.h, rebuilt here for the bare index:
// (x, sqrt(B^2 - |x|^2), 0) with B = 1.25 x the largest key norm among the
// keys the store builds its index from.
std::vector<float> Augment(const float* x, int64_t n, int d, double bound_sq) {
  std::vector<float> out(n * (d + 2), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < d; ++j) {
      out[i * (d + 2) + j] = x[i * d + j];
      norm += double(x[i * d + j]) * x[i * d + j];
    }
    out[i * (d + 2) + d] = static_cast<float>(std::sqrt(std::max(0.0, bound_sq - norm)));
  }
  return out;
}

double MaxNormSq(const float* x, int64_t n, int d) {
  double best = 0;
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < d; ++j) norm += double(x[i * d + j]) * x[i * d + j];
    best = std::max(best, norm);
  }
  return best;
}

// The bare FAISS indexes one store is compared with.
struct BareIndexes {
  std::unique_ptr<faiss::Index> quantizer, alt_quantizer;  // of the IVF indexes
  std::unique_ptr<faiss::Index> bare;
  std::unique_ptr<faiss::Index> alt;  // a float32 index of the same family; null for HNSW
  std::string bare_name, alt_name;
  std::vector<float> queries;  // in the bare indexes' layout: flat: raw; hnsw/ivf: (q, 0, 0)
};

// The store searches fp16 keys by inner product; so do these.
void BuildBareFlat(const std::vector<float>& keys, int64_t size, int d, BareIndexes* b) {
  b->bare = std::make_unique<faiss::IndexScalarQuantizer>(d, faiss::ScalarQuantizer::QT_fp16,
                                                          faiss::METRIC_INNER_PRODUCT);
  b->bare->add(size, keys.data());
  b->bare_name = "IndexScalarQuantizer fp16 IP";
  b->alt = std::make_unique<faiss::IndexFlatIP>(d);
  b->alt->add(size, keys.data());
  b->alt_name = "IndexFlatIP f32 (BLAS)";
}

// `aug`: `size` reduced keys of d + 2; the first `build_n` train the index.
void BuildBareHnsw(const MemoryOptions& o, const std::vector<float>& aug, int64_t size,
                   int64_t build_n, int d, BareIndexes* b) {
  auto h = std::make_unique<faiss::IndexHNSWSQ>(d + 2, faiss::ScalarQuantizer::QT_fp16, o.hnsw_m,
                                                faiss::METRIC_L2);
  h->hnsw.efConstruction = o.hnsw_ef_construction;
  h->hnsw.efSearch = o.hnsw_ef_search;
  h->train(build_n, aug.data());
  h->add(size, aug.data());
  b->bare = std::move(h);
  b->bare_name = "IndexHNSWSQ fp16 L2 (reduced keys)";
}

// As BuildBareHnsw, with `nlist` lists of which a query scans `nprobe`.
void BuildBareIvf(const std::vector<float>& aug, int64_t size, int64_t build_n, int d, int nlist,
                  int nprobe, BareIndexes* b) {
  b->quantizer = std::make_unique<faiss::IndexFlatL2>(d + 2);
  auto ivf = std::make_unique<faiss::IndexIVFScalarQuantizer>(
      b->quantizer.get(), d + 2, nlist, faiss::ScalarQuantizer::QT_fp16, faiss::METRIC_L2, false);
  ivf->train(build_n, aug.data());
  ivf->add(size, aug.data());
  ivf->nprobe = nprobe;
  b->bare = std::move(ivf);
  b->bare_name =
      absl::StrFormat("IndexIVFScalarQuantizer fp16 L2 nlist %d nprobe %d", nlist, nprobe);
  b->alt_quantizer = std::make_unique<faiss::IndexFlatL2>(d + 2);
  auto flat =
      std::make_unique<faiss::IndexIVFFlat>(b->alt_quantizer.get(), d + 2, nlist, faiss::METRIC_L2);
  flat->train(build_n, aug.data());
  flat->add(size, aug.data());
  flat->nprobe = nprobe;
  b->alt = std::move(flat);
  b->alt_name = "IndexIVFFlat f32 (same nlist/nprobe)";
}

// The bare index of `store`'s structure over its `size` keys, built as the
// store builds its own, with the `nq` queries `q` in its layout.
BareIndexes BuildBare(Kind kind, const MemoryOptions& o, const KvStore& store,
                      const std::vector<float>& keys, int64_t size, int d,
                      const std::vector<float>& q, int nq) {
  BareIndexes b;
  b.queries = q;
  if (kind == kFlat) {
    BuildBareFlat(keys, size, d, &b);
    return b;
  }
  // IVF: as many lists as the store has now, trained like its last training
  // (64 keys per list at most, or the training size), bound over all keys.
  const int nlist = static_cast<int>(store.index_lists());
  // The share of lists the store's key budget covers (its lists are ~equal).
  const int nprobe = std::clamp(
      static_cast<int>(std::ceil(static_cast<double>(IvfScanBudget(o, size, nq)) / size * nlist)),
      1, std::max(nlist, 1));
  const int64_t build_n =
      kind == kHnsw
          ? kHnswBuildSize
          : std::min<int64_t>(size, std::max<int64_t>(ResolveMemoryOptions(o, d).ivf_train_size,
                                                      int64_t{64} * nlist));
  const double bound_sq = 1.5625 * MaxNormSq(keys.data(), kind == kHnsw ? build_n : size, d);
  const std::vector<float> aug = Augment(keys.data(), size, d, bound_sq);
  b.queries.assign(static_cast<size_t>(nq) * (d + 2), 0.0f);
  for (int i = 0; i < nq; ++i) std::memcpy(&b.queries[i * (d + 2)], &q[i * d], d * sizeof(float));
  if (kind == kHnsw) {
    BuildBareHnsw(o, aug, size, build_n, d, &b);
  } else {
    BuildBareIvf(aug, size, build_n, d, nlist, nprobe, &b);
  }
  return b;
}

// Fastest of --overhead_rounds searches, in seconds, taking turns.
struct SearchTimes {
  double engine = 1e30, bare = 1e30, alt = 1e30;
};

// False (st has the error) when the store's search fails.
bool TimeSearches(benchmark::State& st, int rounds, const KvStore& store,
                  const std::vector<float>& q, int nq, int d, int k, const BareIndexes& b,
                  SearchTimes* best) {
  std::vector<float> dist(nq * k);
  std::vector<faiss_idx> labels(nq * k);
  std::vector<int64_t> ids(nq * k);
  for (auto _ : st) {
    for (int round = 0; round < rounds; ++round) {
      double t0 = Now();
      if (Fail(st, store.Search(q.data(), nq, d, k, nullptr, ids.data(), dist.data()))) {
        return false;
      }
      best->engine = std::min(best->engine, Now() - t0);
      t0 = Now();
      b.bare->search(nq, b.queries.data(), k, dist.data(), labels.data());
      best->bare = std::min(best->bare, Now() - t0);
      if (b.alt != nullptr) {
        t0 = Now();
        b.alt->search(nq, b.queries.data(), k, dist.data(), labels.data());
        best->alt = std::min(best->alt, Now() - t0);
      }
    }
  }
  return true;
}

// KvStore::Search on one store (first memory layer, kv head 0) with one
// window's queries against a bare FAISS index of the same structure.
void RunOverhead(benchmark::State& st, Context& context, Kind kind, int64_t size) {
  absl::StatusOr<ModelState*> state = context.Ensure(kind, size);
  if (!state.ok()) {
    Fail(st, state.status());
    return;
  }
  const MemoryOptions o = OptionsFor(context.flags(), kind);
  const Flags& flags = context.flags();
  const int k = flags.top_k, d = context.head_dim(), nq = 512;
  const KvStore& store = (*state)->memory[context.mem_layers()[0]]->store(0);
  if (!store.index_built()) {
    st.SkipWithError("the index is not built at this size (its keys are searched exactly)");
    return;
  }
  const std::vector<float> q = context.Queries(0, 0, nq);
  std::vector<float> keys(size * d);  // as stored (fp16-rounded)
  if (Fail(st, store.ReadKeys(0, size, keys.data()))) return;
  const BareIndexes bare = BuildBare(kind, o, store, keys, size, d, q, nq);
  SearchTimes best;
  if (!TimeSearches(st, flags.overhead_rounds, store, q, nq, d, k, bare, &best)) return;

  Figures::Overhead result;
  result.size = size;
  result.bare_name = bare.bare_name;
  result.alt_name = bare.alt_name;
  if (bare.alt != nullptr) result.alt_ms = best.alt * 1e3;
  result.engine_ms = best.engine * 1e3;
  result.bare_ms = best.bare * 1e3;
  if (kind == kFlat && result.alt_ms < result.bare_ms) {
    // The store searches fp16 keys by decoding them and one BLAS product, which
    // IndexFlatIP does without the decode: the faster bare index is the fair one.
    std::swap(result.bare_ms, result.alt_ms);
    std::swap(result.bare_name, result.alt_name);
  }
  context.figures().overhead[kind] = result;
  st.counters["engine_ms"] = result.engine_ms;
  st.counters["bare_ms"] = result.bare_ms;
  st.counters["ratio"] = result.engine_ms / result.bare_ms;
}

template <typename F>
void Register(const std::string& name, int iterations, benchmark::TimeUnit unit, F&& f) {
  benchmark::RegisterBenchmark(name.c_str(), std::forward<F>(f))
      ->Unit(unit)
      ->Iterations(iterations)
      ->UseRealTime();
}

// Registers every benchmark of this run; they hold `context` by reference.
void RegisterAll(Context& context) {
  const Flags& flags = context.flags();
  std::vector<int64_t> sizes;
  for (int64_t s : {int64_t{8192}, int64_t{32768}, int64_t{131072}, int64_t{1048576}}) {
    if (s <= flags.max_memory_tokens) sizes.push_back(s);
  }
  Register("Window/empty/0", 2, benchmark::kMillisecond, [&context](benchmark::State& st) {
    ModelState* state = context.Empty();
    RunWindow(st, context, state, kKnnIvf);  // the reporter records the rate
  });
  Register("BytesFlatF32/" + std::to_string(flags.bytes_f32_tokens), 1, benchmark::kSecond,
           [&context](benchmark::State& st) {
             for (auto _ : st) {
               Fail(st, context.MeasureFlatF32Bytes(context.flags().bytes_f32_tokens));
             }
           });
  for (int64_t size : sizes) {
    const int gen = size >= 524288 ? flags.gen_tokens_large : flags.gen_tokens;
    Register("Generate/empty/" + std::to_string(size), std::max(gen, flags.gen_tokens),
             benchmark::kMillisecond, [&context, size](benchmark::State& st) {
               context.figures().gen_empty_ms[size] =
                   RunGenerate(st, context, context.Empty(), kKnnIvf);
             });
    for (int m = 0; m < kNumModes; ++m) {
      const Mode mode = static_cast<Mode>(m);
      const Kind kind = KindOf(mode);
      if (size > KindMax(flags, kind)) continue;
      const std::string suffix = std::string(kModeNames[m]) + "/" + std::to_string(size);
      if (size <= WindowMax(flags, mode)) {
        Register("Window/" + suffix, flags.window_runs, benchmark::kSecond,
                 [&context, mode, kind, size](benchmark::State& st) {
                   absl::StatusOr<ModelState*> state = context.Ensure(kind, size);
                   if (!state.ok()) {
                     Fail(st, state.status());
                     return;
                   }
                   RunWindow(st, context, *state, mode);
                 });
      }
      Register("Generate/" + suffix, gen, benchmark::kMillisecond,
               [&context, mode, kind, size](benchmark::State& st) {
                 absl::StatusOr<ModelState*> state = context.Ensure(kind, size);
                 if (!state.ok()) {
                   Fail(st, state.status());
                   return;
                 }
                 context.figures().gen_ms[mode][size] = RunGenerate(st, context, *state, mode);
               });
    }
    for (Kind kind : {kHnsw, kIvf}) {
      if (size <= KindMax(flags, kind) && size <= flags.recall_max_tokens) {
        Register(
            absl::StrFormat("Recall/%s/%d", kKindNames[kind], size), 1, benchmark::kSecond,
            [&context, kind, size](benchmark::State& st) { RunRecall(st, context, kind, size); });
      }
    }
    for (Kind kind : {kFlat, kHnsw, kIvf}) {
      const int64_t at = std::min(flags.overhead_tokens, KindMax(flags, kind));
      // At the listed size nearest below `at`.
      int64_t chosen = 0;
      for (int64_t s : sizes) {
        if (s <= at) chosen = s;
      }
      if (chosen == size) {
        Register(
            absl::StrFormat("Overhead/%s/%d", kKindNames[kind], size), 1, benchmark::kSecond,
            [&context, kind, size](benchmark::State& st) { RunOverhead(st, context, kind, size); });
      }
    }
  }
}

// The console reporter, also recording the window rates into `figures`.
class Reporter : public benchmark::ConsoleReporter {
 public:
  explicit Reporter(Figures* figures) : figures_(figures) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      const std::string name = run.benchmark_name();
      if (run.error_occurred || !run.counters.count("tokens_per_s")) continue;
      const double rate = run.counters.at("tokens_per_s").value;
      if (name.starts_with("Window/empty/")) {
        figures_->window_empty_tokens_per_s = rate;
        continue;
      }
      for (int m = 0; m < kNumModes; ++m) {
        const std::string prefix = std::string("Window/") + kModeNames[m] + "/";
        if (name.starts_with(prefix)) {
          figures_->window_tokens_per_s[m][std::stoll(name.substr(prefix.size()))] = rate;
        }
      }
    }
  }

 private:
  Figures* figures_;
};

int Main(int argc, char** argv) {
  UsePassiveOpenMpWaits(argv);  // as every binary of the project (command_line.h)
  Flags flags;
  if (!ParseFlags(&argc, argv, &flags)) return 2;
  benchmark::Initialize(&argc, argv);
  const ModelConfig config = MidSizeConfig();
  auto engine = LoadMidSizeModel();
  if (!engine.ok()) {
    std::fprintf(stderr, "memory_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  const double t0 = Now();
  Figures figures;
  Context context(engine->get(), flags, &figures);
  if (absl::Status s = context.CollectRealRows(); !s.ok()) {
    std::fprintf(stderr, "memory_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  RegisterAll(context);
  Reporter reporter(&figures);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  PrintSummary(flags, figures, config);
  std::printf("whole benchmark: %.0f s\n", Now() - t0);
  return 0;
}

}  // namespace
}  // namespace fot::memory_bench

int main(int argc, char** argv) { return fot::memory_bench::Main(argc, argv); }
