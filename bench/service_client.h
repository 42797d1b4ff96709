// A benchmark client of fot-server: the generated fot.v1.Fot stub (the API
// fotctl uses) on a channel of its own, with every call counted in a Tally by
// method and status code and the latency of every generated token recorded.
//
// Thread safety: one BenchClient and its Tally belong to one thread; merge
// tallies after the threads join.
#ifndef FOTSERVE_BENCH_SERVICE_CLIENT_H_
#define FOTSERVE_BENCH_SERVICE_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "proto/fot.grpc.pb.h"

namespace fot {

using BenchClock = std::chrono::steady_clock;

inline double Ms(BenchClock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest-rank percentile, p in [0, 100]; NaN without samples.
double Percentile(std::vector<double> samples, double p);

struct Latencies {
  std::vector<double> first_ms;      // per call: call start to its first token
  std::vector<double> per_token_ms;  // per token after the first: since the previous one
  std::vector<double> tpot_ms;       // per call of >= 2 tokens: mean time per later token

  void Merge(const Latencies& other);
};

// What one client did.
struct Tally {
  int64_t calls = 0;
  int64_t failed = 0;
  int64_t rounds = 0;  // the caller's loop iterations
  int64_t ingest_tokens = 0;
  int64_t generated_tokens = 0;
  std::map<std::string, int64_t> calls_by_method;
  std::map<std::string, int64_t> failures;  // "Method STATUS_CODE" -> count
  std::vector<std::string> errors;          // the first few messages
  Latencies latency;                        // of successful Generate calls

  // Counts a call; returns status.ok().
  bool Record(const std::string& method, const grpc::Status& status);
  void Merge(const Tally& other);
};

class BenchClient {
 public:
  // A channel of its own to `address` (not a shared subchannel: one client,
  // one connection). Every call gets `timeout` as its deadline. `tally` is
  // not owned.
  BenchClient(const std::string& address, std::chrono::milliseconds timeout, Tally* tally);

  // Each returns whether the call succeeded. `retrieval` "" is the server's.
  bool CreateSession(const std::string& name, const std::string& retrieval);
  bool DeleteSession(const std::string& name);
  bool DeleteDocument(const std::string& session, const std::string& document);
  bool GetSession(const std::string& session);
  bool MemoryStats(const std::string& session);
  bool Score(const std::string& session, const std::string& context,
             const std::string& continuation);

  // Streams one new document in lockstep (each chunk waits for its
  // acknowledgement): `text` in chunks of `chunk` bytes, or, if text is
  // empty, `ids` in chunks of `chunk` tokens. Returns the document's tokens
  // in the session, or -1 if the call failed.
  int64_t Ingest(const std::string& session, const std::string& document, const std::string& text,
                 const std::vector<int>& ids, int chunk, bool add_bos);

  // A Generate call; its latencies go to the tally. Returns the generated
  // ids, nullopt if the call failed.
  std::optional<std::vector<int>> Generate(const fot::v1::GenerateRequest& request);
  // `tokens` tokens (EOS ignored, so every answer has that length) for `question`.
  std::optional<std::vector<int>> Ask(const std::string& session, const std::string& question,
                                      int tokens);

 private:
  void SetDeadline(grpc::ClientContext* context) const;

  std::unique_ptr<fot::v1::Fot::Stub> stub_;
  std::chrono::milliseconds timeout_;
  Tally* tally_;
};

}  // namespace fot

#endif  // FOTSERVE_BENCH_SERVICE_CLIENT_H_
