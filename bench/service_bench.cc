// gRPC service benchmark (issue 4): the real fot-server, started here as a
// child process on a loopback port with a fresh data directory, driven through
// the generated fot.v1.Fot stub (the API fotctl uses), on the project's own
// model (models/fot-dict). Four phases, every figure measured in this run:
//
//   overhead     one client, one session: a document ingested as token ids,
//                then greedy Generate calls of --overhead_tokens tokens; the
//                same work in-process on fot::Session (the server's session
//                options, the same tokens and chunks), the two paths taking
//                turns. First-token and per-token latency of both, and the
//                service's per-token overhead (target <= 1 ms).
//   concurrency  for each of --clients (1, 4, 16): that many clients, each on
//                its own connection, looping for --phase_seconds: create a
//                session, ingest a document of about --doc_tokens tokens as
//                text chunks, ask --questions questions of --answer_tokens
//                tokens, delete the session. Then --shared_clients clients
//                asking one session at once. Calls, failures, ingest and
//                generation tokens/s, first-token and per-token latency.
//   soak         --soak_clients clients for --soak_seconds mixing ingest, ask
//                (own and shared session), score, stats, delete document and
//                delete session. Failed calls by method and status code
//                (target: none in 5 minutes with 16 clients).
//   rss          --cycles of create session, ingest, ask, delete session; the
//                server's VmRSS after each (target: no growth over the second
//                half beyond max(5%, 4 MiB)).
//
// Per-token latency is measured where the client reads each token. Under
// load several tokens can arrive in one read, so the phase tables give each
// call's mean time per token after the first (p50/p99 over calls); the
// overhead phase, with one client on a quiet server, gives the gaps between
// consecutive tokens.
//
//   service_bench [--soak_seconds=300] [--cycles=20] [--clients=1,4,16]
//                 [--phases=overhead,concurrency,soak,rss] [--server=PATH]
//                 [--model=DIR]
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/status_macros.h"
#include "bench/server_process.h"
#include "bench/service_client.h"
#include "src/engine/engine.h"
#include "src/engine/session.h"
#include "src/server/session_options.h"
#include "src/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, server, "", "fot-server binary (default: the one next to this binary)");
ABSL_FLAG(std::string, model, FOT_SOURCE_DIR "/models/fot-dict", "Model folder");
ABSL_FLAG(std::string, phases, "overhead,concurrency,soak,rss", "Phases to run, in order");
ABSL_FLAG(std::string, retrieval, "", "Retrieval of the bench's sessions ('': the server's)");
ABSL_FLAG(int, overhead_tokens, 256, "overhead: tokens generated per call");
ABSL_FLAG(int, overhead_repeats, 5, "overhead: measured calls per path (after one warm-up)");
ABSL_FLAG(int, chunk_tokens, 512, "overhead: token ids per ingest chunk");
ABSL_FLAG(int, doc_tokens, 3000, "Tokens of each document (about)");
ABSL_FLAG(int, chunk_bytes, 2048, "Bytes of text per ingest chunk");
ABSL_FLAG(int, answer_tokens, 24, "Tokens generated per question");
ABSL_FLAG(int, questions, 2, "concurrency: questions per ingested document");
ABSL_FLAG(std::string, clients, "1,4,16", "concurrency: client counts, each its own sessions");
ABSL_FLAG(int, shared_clients, 4, "concurrency: clients asking one session at once (0: skip)");
ABSL_FLAG(double, phase_seconds, 20, "concurrency: seconds per client count");
ABSL_FLAG(int, soak_clients, 16, "soak: concurrent clients");
ABSL_FLAG(double, soak_seconds, 300, "soak: duration");
ABSL_FLAG(int, soak_max_docs, 4, "soak: documents per session before it is deleted");
ABSL_FLAG(int, cycles, 20, "rss: create / ingest / ask / delete cycles");
ABSL_FLAG(double, call_timeout_s, 120, "Deadline of every call");

namespace fot {
namespace {

namespace pb = ::fot::v1;

constexpr double kOverheadTargetMs = 1;
constexpr double kSoakTargetSeconds = 300;
constexpr int kSoakTargetClients = 16;
constexpr double kRssTolerancePercent = 5, kRssToleranceMiB = 4;
constexpr char kQuestion[] = "what is the pass key? the pass key is";

BenchClock::time_point After(double seconds) {
  return BenchClock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1e3));
}

// A document in the fot-dict training vocabulary (as tools/demo.sh writes
// them): filler sentences with a pass key near the start, about `tokens`
// tokens long.
std::string MakeDocument(uint32_t seed, int tokens, const Tokenizer& tokenizer) {
  static const std::vector<std::string> nouns = {
      "grass", "sky",   "sun", "moon",  "river", "tree", "stone", "bird", "house", "road",
      "hill",  "cloud", "sea", "field", "lamp",  "door", "book",  "cat",  "dog",   "apple"};
  static const std::vector<std::string> adjs = {
      "green", "blue", "yellow", "red",   "quiet", "warm", "cold", "bright",
      "dark",  "old",  "new",    "small", "big",   "soft", "calm", "wide"};
  static const std::vector<std::string> verbs = {"sees",    "finds",  "likes",
                                                 "follows", "passes", "meets"};
  std::mt19937 rng(seed);
  auto pick = [&](const std::vector<std::string>& v) { return v[rng() % v.size()]; };
  std::string text;
  for (int i = 0;; ++i) {
    if (i % 64 == 0 && static_cast<int>(tokenizer.Encode(text).size()) >= tokens) break;
    if (!text.empty()) text += ' ';
    if (i == 5) {
      const int key = 10000 + static_cast<int>(rng() % 90000);
      text += absl::StrCat("the pass key is ", key, ". remember it. ", key, " is the pass key.");
    } else if (rng() % 2 == 0) {
      text += "the " + pick(nouns) + " is " + pick(adjs) + ".";
    } else {
      text +=
          "a " + pick(adjs) + " " + pick(nouns) + " " + pick(verbs) + " the " + pick(nouns) + ".";
    }
  }
  return text;
}

// What every phase shares.
struct Bench {
  ServerProcess* server;
  const Engine* engine;
  const Tokenizer* tokenizer;
  std::vector<std::string> documents;  // variants, chosen per round
  std::chrono::milliseconds timeout;
  std::string retrieval;
  int chunk_bytes;
  int answer_tokens;

  BenchClient Client(Tally* tally) const { return BenchClient(server->address(), timeout, tally); }
};

// --- phase 1: service overhead over the engine ----------------------------------

struct OverheadResult {
  Latencies service, direct;
  double service_ingest_s = 0, direct_ingest_s = 0;
  int64_t document_tokens = 0, prompt_tokens = 0;
  bool same_tokens = true;
};

absl::StatusOr<OverheadResult> RunOverhead(const Bench& b) {
  const int tokens = absl::GetFlag(FLAGS_overhead_tokens);
  const int chunk = absl::GetFlag(FLAGS_chunk_tokens);
  std::vector<int> document = {b.tokenizer->bos_id()};
  const std::vector<int> body = b.tokenizer->Encode(b.documents[0]);
  document.insert(document.end(), body.begin(), body.end());
  const std::vector<int> question = b.tokenizer->Encode(kQuestion);

  // The session options of the server's sessions, resolved as fot-server
  // (its default flags) and CreateSession do.
  SessionOptions options;
  options.memory = b.engine->DefaultMemoryOptions();
  SessionOptionsSpec server_spec;
  server_spec.retrieval = "dense";
  server_spec.index = "flat";
  SessionOptionsSpec session_spec;
  session_spec.retrieval = b.retrieval;
  FOT_ASSIGN_OR_RETURN(options, ResolveSessionOptions(server_spec, options, b.engine->config()));
  FOT_ASSIGN_OR_RETURN(options, ResolveSessionOptions(session_spec, options, b.engine->config()));

  OverheadResult r;
  r.document_tokens = document.size();
  Tally tally;
  BenchClient client = b.Client(&tally);
  const auto failed = [&] { return absl::InternalError(tally.errors.front()); };
  if (!client.CreateSession("overhead", b.retrieval)) return failed();
  auto start = BenchClock::now();
  if (client.Ingest("overhead", "doc", "", document, chunk, false) < 0) return failed();
  r.service_ingest_s = Ms(BenchClock::now() - start) / 1e3;

  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, Session::Create(b.engine, options));
  start = BenchClock::now();
  FOT_RETURN_IF_ERROR(session->StartDocument("doc").status());
  for (size_t at = 0; at < document.size(); at += chunk) {
    const size_t n = std::min<size_t>(chunk, document.size() - at);
    FOT_RETURN_IF_ERROR(
        session->AppendToDocument("doc", absl::MakeConstSpan(document).subspan(at, n)).status());
  }
  r.direct_ingest_s = Ms(BenchClock::now() - start) / 1e3;

  pb::GenerateRequest request;
  request.set_session("overhead");
  request.mutable_question_token_ids()->Add(question.begin(), question.end());
  request.set_max_tokens(tokens);
  request.set_temperature(0);
  request.set_seed(7);
  request.set_ignore_eos(true);
  QueryOptions query;
  query.sampling.temperature = 0;
  query.sampling.seed = 7;
  query.max_tokens = tokens;
  query.stop_at_eos = false;

  // The paths take turns, so both see the same machine; call 0 warms up.
  for (int i = 0; i <= absl::GetFlag(FLAGS_overhead_repeats); ++i) {
    tally.latency = {};
    const auto service_ids = client.Generate(request);
    if (!service_ids.has_value()) return failed();

    Latencies direct;
    std::vector<int> direct_ids;
    BenchClock::time_point call_start, first, last;
    query.on_token = [&](const GeneratedToken& token, const float*) {
      const auto now = BenchClock::now();
      if (direct_ids.empty()) {
        direct.first_ms.push_back(Ms(now - call_start));
        first = now;
      } else {
        direct.per_token_ms.push_back(Ms(now - last));
      }
      last = now;
      direct_ids.push_back(token.token);
      return true;
    };
    call_start = BenchClock::now();
    FOT_ASSIGN_OR_RETURN(QueryResult result, session->Generate(question, query));
    if (direct_ids.size() >= 2)
      direct.tpot_ms.push_back(Ms(last - first) / (direct_ids.size() - 1));
    r.prompt_tokens = result.prompt_tokens;
    r.same_tokens &= direct_ids == *service_ids;
    if (i == 0) continue;
    r.service.Merge(tally.latency);
    r.direct.Merge(direct);
  }
  if (!client.DeleteSession("overhead")) return failed();
  return r;
}

// --- phase 2: concurrent clients --------------------------------------------------

struct PhaseResult {
  std::string label;
  double seconds = 0;
  Tally tally;
  ServerRss rss;  // at the end of the phase
};

// `clients` clients, each in a loop of create / ingest / ask / delete on
// sessions of its own; or, with `shared`, each asking one session.
PhaseResult RunConcurrency(const Bench& b, int clients, bool shared) {
  const int questions = absl::GetFlag(FLAGS_questions);
  PhaseResult result;
  result.label = shared ? absl::StrCat(clients, " on 1 session") : absl::StrCat(clients);
  Tally setup;
  const std::string shared_session = absl::StrCat("shared-", clients);
  if (shared) {
    BenchClient client = b.Client(&setup);
    client.CreateSession(shared_session, b.retrieval);
    client.Ingest(shared_session, "doc", b.documents[0], {}, b.chunk_bytes, true);
  }
  std::vector<Tally> tallies(clients);
  std::vector<std::thread> threads;
  const auto start = BenchClock::now();
  const auto deadline = After(absl::GetFlag(FLAGS_phase_seconds));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      BenchClient client = b.Client(&tallies[c]);
      for (int round = 0; BenchClock::now() < deadline; ++round, ++tallies[c].rounds) {
        if (shared) {
          client.Ask(shared_session, kQuestion, b.answer_tokens);
          continue;
        }
        const std::string session = absl::StrFormat("conc-%d-%d-%d", clients, c, round);
        if (!client.CreateSession(session, b.retrieval)) continue;
        client.Ingest(session, "doc", b.documents[(c + round) % b.documents.size()], {},
                      b.chunk_bytes, true);
        for (int q = 0; q < questions; ++q) client.Ask(session, kQuestion, b.answer_tokens);
        client.DeleteSession(session);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  result.seconds = Ms(BenchClock::now() - start) / 1e3;
  for (const Tally& t : tallies) result.tally.Merge(t);
  if (shared) b.Client(&setup).DeleteSession(shared_session);
  // The setup's calls count, but not its tokens or latencies.
  result.tally.calls += setup.calls;
  result.tally.failed += setup.failed;
  for (const auto& [what, n] : setup.failures) result.tally.failures[what] += n;
  result.rss = b.server->ReadRss();
  return result;
}

// --- phase 3: soak ----------------------------------------------------------------

PhaseResult RunSoak(const Bench& b) {
  const int clients = absl::GetFlag(FLAGS_soak_clients);
  const int max_docs = absl::GetFlag(FLAGS_soak_max_docs);
  PhaseResult result;
  result.label = absl::StrCat(clients, " clients");
  Tally setup;
  {
    BenchClient client = b.Client(&setup);
    client.CreateSession("soak-shared", b.retrieval);
    client.Ingest("soak-shared", "doc", b.documents[0], {}, b.chunk_bytes, true);
  }
  std::vector<Tally> tallies(clients);
  std::vector<std::thread> threads;
  const auto start = BenchClock::now();
  const auto deadline = After(absl::GetFlag(FLAGS_soak_seconds));
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      Tally& tally = tallies[c];
      BenchClient client = b.Client(&tally);
      std::mt19937 rng(1000 + c);
      int generation = 0, documents = 0;
      std::string session;
      std::vector<std::string> live;  // documents not deleted
      const auto renew = [&] {
        if (!session.empty()) client.DeleteSession(session);
        session = absl::StrFormat("soak-%d-%d", c, generation++);
        client.CreateSession(session, b.retrieval);
        documents = 0;
        live.clear();
      };
      renew();
      for (; BenchClock::now() < deadline; ++tally.rounds) {
        const int op = static_cast<int>(rng() % 100);
        if (op < 25 || (documents == 0 && op < 50)) {
          const std::string name = absl::StrCat("d", documents);
          const std::string& text = b.documents[rng() % b.documents.size()];
          if (client.Ingest(session, name, text, {}, b.chunk_bytes, documents == 0) >= 0) {
            live.push_back(name);
          }
          if (++documents >= max_docs) renew();
        } else if (op < 50) {
          client.Ask(session, kQuestion, b.answer_tokens);
        } else if (op < 60) {
          client.Ask("soak-shared", kQuestion, b.answer_tokens);
        } else if (op < 72) {
          client.Score(session, "what is the pass key?", " the pass key is 48213.");
        } else if (op < 82) {
          if (op % 2 == 0) {
            client.MemoryStats(session);
          } else {
            client.GetSession(session);
          }
        } else if (op < 94) {
          if (live.empty()) {
            client.MemoryStats("soak-shared");
          } else {
            const size_t i = rng() % live.size();
            client.DeleteDocument(session, live[i]);
            live.erase(live.begin() + i);
          }
        } else {
          renew();
        }
      }
      client.DeleteSession(session);
    });
  }
  for (std::thread& t : threads) t.join();
  result.seconds = Ms(BenchClock::now() - start) / 1e3;
  for (const Tally& t : tallies) result.tally.Merge(t);
  b.Client(&setup).DeleteSession("soak-shared");
  result.tally.calls += setup.calls;
  result.tally.failed += setup.failed;
  for (const auto& [what, n] : setup.failures) result.tally.failures[what] += n;
  for (const auto& [method, n] : setup.calls_by_method) result.tally.calls_by_method[method] += n;
  result.rss = b.server->ReadRss();
  return result;
}

// --- phase 4: RSS across cycles ------------------------------------------------------

// Growth over the second half: the median of the last quarter of cycles
// against the median of the quarter before the second half (medians, because
// a single reading moves by a few MiB with what the allocator keeps).
struct RssResult {
  std::vector<double> mib;  // VmRSS after each cycle
  Tally tally;
  double median = 0, before = 0, after = 0, growth = 0, tolerance = 0;
};

RssResult RunRss(const Bench& b) {
  RssResult r;
  BenchClient client = b.Client(&r.tally);
  const int cycles = std::max(4, absl::GetFlag(FLAGS_cycles));
  for (int i = 0; i < cycles; ++i) {
    const std::string session = absl::StrCat("rss-", i);
    client.CreateSession(session, b.retrieval);
    client.Ingest(session, "doc", b.documents[0], {}, b.chunk_bytes, true);
    client.Ask(session, kQuestion, b.answer_tokens);
    client.DeleteSession(session);
    r.mib.push_back(b.server->ReadRss().rss_mib);
  }
  const size_t quarter = r.mib.size() / 4, half = r.mib.size() / 2;
  r.median = Percentile(r.mib, 50);
  r.before = Percentile({r.mib.begin() + half - quarter, r.mib.begin() + half}, 50);
  r.after = Percentile({r.mib.end() - quarter, r.mib.end()}, 50);
  r.growth = r.after - r.before;
  r.tolerance = std::max(kRssToleranceMiB, r.before * kRssTolerancePercent / 100);
  return r;
}

// --- reporting ----------------------------------------------------------------------

void PrintFailures(const Tally& t) {
  for (const auto& [what, n] : t.failures) {
    std::printf("    failed: %-36s %lld\n", what.c_str(), static_cast<long long>(n));
  }
  for (const std::string& e : t.errors) std::printf("    e.g. %s\n", e.c_str());
}

void PrintPhaseHeader() {
  std::printf("%-16s %6s %7s %6s %10s %9s %8s %8s %8s %8s %8s\n", "clients", "s", "calls", "failed",
              "ingest t/s", "gen t/s", "1st p50", "1st p99", "tok p50", "tok p99", "RSS MiB");
}

void PrintPhaseRow(const PhaseResult& p) {
  const Latencies& l = p.tally.latency;
  const std::string ingest =
      p.tally.ingest_tokens > 0 ? absl::StrFormat("%.0f", p.tally.ingest_tokens / p.seconds) : "-";
  std::printf("%-16s %6.1f %7lld %6lld %10s %9.0f %8.2f %8.2f %8.3f %8.3f %8.1f\n", p.label.c_str(),
              p.seconds, static_cast<long long>(p.tally.calls),
              static_cast<long long>(p.tally.failed), ingest.c_str(),
              p.tally.generated_tokens / p.seconds, Percentile(l.first_ms, 50),
              Percentile(l.first_ms, 99), Percentile(l.tpot_ms, 50), Percentile(l.tpot_ms, 99),
              p.rss.rss_mib);
  std::fflush(stdout);
}

void PrintOverhead(const OverheadResult& r) {
  std::printf("%-22s %9s %9s %9s %9s %9s %11s\n", "path", "1st p50", "1st p99", "tok p50",
              "tok p99", "tok mean", "ingest t/s");
  for (const auto& [name, l, ingest_s] :
       {std::tuple{"service (gRPC)", &r.service, r.service_ingest_s},
        std::tuple{"engine (fot::Session)", &r.direct, r.direct_ingest_s}}) {
    std::printf("%-22s %9.3f %9.3f %9.3f %9.3f %9.3f %11.0f\n", name, Percentile(l->first_ms, 50),
                Percentile(l->first_ms, 99), Percentile(l->per_token_ms, 50),
                Percentile(l->per_token_ms, 99), Percentile(l->tpot_ms, 50),
                r.document_tokens / ingest_s);
  }
  std::printf(
      "(ms; tok: gaps between consecutive tokens, tok mean: per call, p50 over calls; "
      "document %lld tokens, prompt %lld tokens; the same greedy tokens on both paths: "
      "%s)\n",
      static_cast<long long>(r.document_tokens), static_cast<long long>(r.prompt_tokens),
      r.same_tokens ? "yes" : "NO");
}

void SummaryRow(const std::string& target, const std::string& measured, const char* verdict) {
  std::printf("%-54s %-40s %s\n", target.c_str(), measured.c_str(), verdict);
}

// --- the phases, each run and printed --------------------------------------------

// Phase 1; nullopt (after printing why) when it failed.
std::optional<OverheadResult> OverheadPhase(const Bench& b) {
  std::printf(
      "\n== phase 1: service overhead (one client, %d greedy tokens, %d calls per "
      "path) ==\n",
      absl::GetFlag(FLAGS_overhead_tokens), absl::GetFlag(FLAGS_overhead_repeats));
  auto r = RunOverhead(b);
  if (!r.ok()) {
    std::printf("failed: %s\n", std::string(r.status().message()).c_str());
    return std::nullopt;
  }
  PrintOverhead(*r);
  return *r;
}

// Phase 2: a row per --clients count, then one for --shared_clients.
std::vector<PhaseResult> ConcurrencyPhase(const Bench& b) {
  std::vector<PhaseResult> concurrency;
  std::printf(
      "\n== phase 2: concurrent clients (%.0f s each; documents of ~%d tokens in "
      "%d-byte chunks, %d questions of %d tokens per document) ==\n",
      absl::GetFlag(FLAGS_phase_seconds), absl::GetFlag(FLAGS_doc_tokens), b.chunk_bytes,
      absl::GetFlag(FLAGS_questions), b.answer_tokens);
  PrintPhaseHeader();
  for (absl::string_view n : absl::StrSplit(absl::GetFlag(FLAGS_clients), ',', absl::SkipEmpty())) {
    concurrency.push_back(RunConcurrency(b, std::stoi(std::string(n)), false));
    PrintPhaseRow(concurrency.back());
  }
  if (absl::GetFlag(FLAGS_shared_clients) > 0) {
    concurrency.push_back(RunConcurrency(b, absl::GetFlag(FLAGS_shared_clients), true));
    PrintPhaseRow(concurrency.back());
  }
  std::printf(
      "(ms, p50/p99 over calls; tok: a call's mean time per token after the first; "
      "t/s: tokens/s of all clients together)\n");
  for (const PhaseResult& p : concurrency) PrintFailures(p.tally);
  return concurrency;
}

PhaseResult SoakPhase(const Bench& b) {
  std::printf("\n== phase 3: soak (%d clients, %.0f s) ==\n", absl::GetFlag(FLAGS_soak_clients),
              absl::GetFlag(FLAGS_soak_seconds));
  std::fflush(stdout);  // the phase prints nothing for minutes
  const PhaseResult soak = RunSoak(b);
  PrintPhaseHeader();
  PrintPhaseRow(soak);
  std::vector<std::string> calls;
  for (const auto& [method, n] : soak.tally.calls_by_method) {
    calls.push_back(absl::StrCat(method, " ", n));
  }
  std::printf("calls: %s\n", absl::StrJoin(calls, ", ").c_str());
  PrintFailures(soak.tally);
  return soak;
}

RssResult RssPhase(const Bench& b) {
  std::printf("\n== phase 4: server RSS across create / ingest / ask / delete cycles ==\n");
  const RssResult rss = RunRss(b);
  std::vector<std::string> values;
  for (double v : rss.mib) values.push_back(absl::StrFormat("%.1f", v));
  std::printf("VmRSS after each cycle (MiB): %s\n", absl::StrJoin(values, " ").c_str());
  std::printf(
      "first %.1f, median %.1f, last %.1f MiB; growth over the second half %+.2f MiB "
      "(median of the last %zu cycles %.1f, of the %zu before the second half %.1f)\n",
      rss.mib.front(), rss.median, rss.mib.back(), rss.growth, rss.mib.size() / 4, rss.after,
      rss.mib.size() / 4, rss.before);
  PrintFailures(rss.tally);
  return rss;
}

// --- the summary ------------------------------------------------------------------

void SummarizeOverhead(const OverheadResult& overhead) {
  const Latencies &s = overhead.service, &d = overhead.direct;
  const double s50 = Percentile(s.per_token_ms, 50), d50 = Percentile(d.per_token_ms, 50);
  const double s99 = Percentile(s.per_token_ms, 99), d99 = Percentile(d.per_token_ms, 99);
  SummaryRow("per-token overhead of the service (p50) <= 1 ms",
             absl::StrFormat("%+.3f ms (%.3f vs %.3f)", s50 - d50, s50, d50),
             s50 - d50 <= kOverheadTargetMs ? "met" : "NOT met");
  SummaryRow("  p99, for information",
             absl::StrFormat("%+.3f ms (%.3f vs %.3f)", s99 - d99, s99, d99), "");
  SummaryRow("  first token p50, for information",
             absl::StrFormat("%+.3f ms (%.3f vs %.3f)",
                             Percentile(s.first_ms, 50) - Percentile(d.first_ms, 50),
                             Percentile(s.first_ms, 50), Percentile(d.first_ms, 50)),
             "");
  SummaryRow("  service and engine generate the same tokens", overhead.same_tokens ? "yes" : "no",
             overhead.same_tokens ? "met" : "NOT met");
}

void SummarizeSoak(const PhaseResult& soak) {
  const bool full =
      soak.seconds >= kSoakTargetSeconds && absl::GetFlag(FLAGS_soak_clients) >= kSoakTargetClients;
  SummaryRow(
      "16 clients for 5 minutes: zero failed calls",
      absl::StrFormat("%d clients, %.0f s: %lld of %lld failed", absl::GetFlag(FLAGS_soak_clients),
                      soak.seconds, static_cast<long long>(soak.tally.failed),
                      static_cast<long long>(soak.tally.calls)),
      soak.tally.failed != 0 ? "NOT met"
      : full                 ? "met"
                             : "met for this shorter run");
}

// The issue-4 targets against what the phases that ran measured.
void PrintSummary(const std::optional<OverheadResult>& overhead,
                  const std::vector<PhaseResult>& concurrency,
                  const std::optional<PhaseResult>& soak, const std::optional<RssResult>& rss,
                  bool alive) {
  std::printf("\n== service summary (this machine, this run) ==\n");
  SummaryRow("target", "measured", "");
  if (overhead.has_value()) SummarizeOverhead(*overhead);
  for (const PhaseResult& p : concurrency) {
    SummaryRow(absl::StrCat(p.label, " client(s): zero failed calls"),
               absl::StrFormat("%lld of %lld failed", static_cast<long long>(p.tally.failed),
                               static_cast<long long>(p.tally.calls)),
               p.tally.failed == 0 ? "met" : "NOT met");
  }
  if (soak.has_value()) SummarizeSoak(*soak);
  if (rss.has_value()) {
    SummaryRow(absl::StrFormat("RSS growth over the 2nd half of %zu cycles <= %.1f MiB",
                               rss->mib.size(), rss->tolerance),
               absl::StrFormat("%+.2f MiB (%.1f -> %.1f)", rss->growth, rss->before, rss->after),
               rss->growth <= rss->tolerance && rss->tally.failed == 0 ? "met" : "NOT met");
  }
  SummaryRow("server alive at the end", alive ? "yes" : "no", alive ? "met" : "NOT met");
}

// --- the run ----------------------------------------------------------------------

// The model and server the run measures, on one line.
void PrintSetup(const Bench& b, const std::string& model) {
  const ModelConfig& config = b.engine->config();
  std::printf(
      "fot-server pid %d on %s: %s (hidden %d, %d layers, W %d, L %d), %u cores; "
      "server RSS %.1f MiB\n",
      b.server->pid(), b.server->address().c_str(), model.c_str(), config.hidden_size,
      config.num_hidden_layers, config.max_position_embeddings, config.last_context_length,
      std::thread::hardware_concurrency(), b.server->ReadRss().rss_mib);
}

int RunAll(ServerProcess* server, const std::string& model) {
  auto engine = Engine::Load(model);
  if (!engine.ok()) {
    std::fprintf(stderr, "service_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  auto tokenizer = Tokenizer::Load(model + "/tokenizer.model");
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "service_bench: %s\n", std::string(tokenizer.status().message()).c_str());
    return 1;
  }
  Bench b{
      server,
      engine->get(),
      tokenizer->get(),
      {},
      std::chrono::milliseconds(static_cast<int64_t>(absl::GetFlag(FLAGS_call_timeout_s) * 1e3)),
      absl::GetFlag(FLAGS_retrieval),
      absl::GetFlag(FLAGS_chunk_bytes),
      absl::GetFlag(FLAGS_answer_tokens)};
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    b.documents.push_back(MakeDocument(seed, absl::GetFlag(FLAGS_doc_tokens), **tokenizer));
  }
  const std::vector<std::string> phases = absl::StrSplit(absl::GetFlag(FLAGS_phases), ',');
  const auto want = [&](const char* p) {
    return std::find(phases.begin(), phases.end(), p) != phases.end();
  };
  PrintSetup(b, model);
  int exit_code = 0;

  std::optional<OverheadResult> overhead;
  if (want("overhead")) {
    overhead = OverheadPhase(b);
    if (!overhead.has_value()) exit_code = 1;
  }
  std::vector<PhaseResult> concurrency;
  if (want("concurrency")) concurrency = ConcurrencyPhase(b);
  std::optional<PhaseResult> soak;
  if (want("soak")) soak = SoakPhase(b);
  std::optional<RssResult> rss;
  if (want("rss")) rss = RssPhase(b);

  const bool alive = server->Alive();
  const ServerRss end_rss = server->ReadRss();
  std::printf("\nserver at the end: %s, VmRSS %.1f MiB, peak VmHWM %.1f MiB\n",
              alive ? "running" : "EXITED", end_rss.rss_mib, end_rss.hwm_mib);
  PrintSummary(overhead, concurrency, soak, rss, alive);
  if (!alive) {
    std::printf("server log:\n%s\n", server->Log().c_str());
    exit_code = 1;
  }
  return exit_code;
}

int Main(int argc, char** argv) {
  ParseCommandLine(argc, argv,
                   "service_bench [--soak_seconds=300] [--cycles=20] [--clients=1,4,16] "
                   "[--phases=overhead,concurrency,soak,rss] [--server=PATH] [--model=DIR]");
  std::string binary = absl::GetFlag(FLAGS_server);
  if (binary.empty()) {
    binary =
        (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "fot-server").string();
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  std::string work = (std::filesystem::temp_directory_path() / "service_bench.XXXXXX").string();
  if (mkdtemp(work.data()) == nullptr) {
    std::fprintf(stderr, "service_bench: cannot create a folder in %s\n",
                 std::filesystem::temp_directory_path().c_str());
    return 1;
  }
  // SIGINT / SIGTERM (Ctrl-C) stop the server and remove the folder.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  int exit_code = 1;
  {
    // First, while this process has no threads yet (it forks).
    auto server = ServerProcess::Start(binary, model, work);
    if (server.ok()) {
      std::thread([signals, work, pid = (*server)->pid()] {
        int signal_number = 0;
        sigwait(&signals, &signal_number);
        kill(pid, SIGKILL);
        std::error_code ignored;
        std::filesystem::remove_all(work, ignored);
        _exit(128 + signal_number);
      }).detach();
      exit_code = RunAll(server->get(), model);
    } else {
      std::fprintf(stderr, "service_bench: %s\n", std::string(server.status().message()).c_str());
    }
  }  // the server stops here
  std::filesystem::remove_all(work);
  return exit_code;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) { return fot::Main(argc, argv); }
