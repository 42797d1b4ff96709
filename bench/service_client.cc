#include "bench/service_client.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace fot {

namespace pb = ::fot::v1;

double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return std::nan("");
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100 * samples.size()));
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

void Latencies::Merge(const Latencies& other) {
  first_ms.insert(first_ms.end(), other.first_ms.begin(), other.first_ms.end());
  per_token_ms.insert(per_token_ms.end(), other.per_token_ms.begin(), other.per_token_ms.end());
  tpot_ms.insert(tpot_ms.end(), other.tpot_ms.begin(), other.tpot_ms.end());
}

bool Tally::Record(const std::string& method, const grpc::Status& status) {
  ++calls;
  ++calls_by_method[method];
  if (status.ok()) return true;
  ++failed;
  // absl and gRPC status codes are numerically equal.
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  ++failures[absl::StrCat(method, " ", absl::StatusCodeToString(code))];
  if (errors.size() < 5) errors.push_back(absl::StrCat(method, ": ", status.error_message()));
  return false;
}

void Tally::Merge(const Tally& other) {
  calls += other.calls;
  failed += other.failed;
  rounds += other.rounds;
  ingest_tokens += other.ingest_tokens;
  generated_tokens += other.generated_tokens;
  for (const auto& [method, n] : other.calls_by_method) calls_by_method[method] += n;
  for (const auto& [what, n] : other.failures) failures[what] += n;
  for (const std::string& e : other.errors) {
    if (errors.size() < 5) errors.push_back(e);
  }
  latency.Merge(other.latency);
}

BenchClient::BenchClient(const std::string& address, std::chrono::milliseconds timeout,
                         Tally* tally)
    : timeout_(timeout), tally_(tally) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(-1);
  stub_ = pb::Fot::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
}

void BenchClient::SetDeadline(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() + timeout_);
}

bool BenchClient::CreateSession(const std::string& name, const std::string& retrieval) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::CreateSessionRequest request;
  request.set_name(name);
  request.mutable_options()->set_retrieval(retrieval);
  pb::SessionInfo info;
  return tally_->Record("CreateSession", stub_->CreateSession(&context, request, &info));
}

bool BenchClient::DeleteSession(const std::string& name) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::DeleteSessionRequest request;
  request.set_session(name);
  pb::DeleteSessionResponse response;
  return tally_->Record("DeleteSession", stub_->DeleteSession(&context, request, &response));
}

bool BenchClient::DeleteDocument(const std::string& session, const std::string& document) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::DeleteDocumentRequest request;
  request.set_session(session);
  request.set_document(document);
  pb::DeleteDocumentResponse response;
  return tally_->Record("DeleteDocument", stub_->DeleteDocument(&context, request, &response));
}

bool BenchClient::GetSession(const std::string& session) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::GetSessionRequest request;
  request.set_session(session);
  pb::SessionInfo response;
  return tally_->Record("GetSession", stub_->GetSession(&context, request, &response));
}

bool BenchClient::MemoryStats(const std::string& session) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::MemoryStatsRequest request;
  request.set_session(session);
  pb::MemoryStatsResponse response;
  return tally_->Record("MemoryStats", stub_->MemoryStats(&context, request, &response));
}

bool BenchClient::Score(const std::string& session, const std::string& context_text,
                        const std::string& continuation) {
  grpc::ClientContext context;
  SetDeadline(&context);
  pb::ScoreRequest request;
  request.set_session(session);
  request.set_context(context_text);
  request.set_continuation(continuation);
  pb::ScoreResponse response;
  return tally_->Record("Score", stub_->Score(&context, request, &response));
}

int64_t BenchClient::Ingest(const std::string& session, const std::string& document,
                            const std::string& text, const std::vector<int>& ids, int chunk,
                            bool add_bos) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = stub_->Ingest(&context);
  pb::IngestRequest request;
  pb::IngestOpen* open = request.mutable_open();
  open->set_session(session);
  open->set_document(document);
  open->set_add_bos(add_bos);
  pb::IngestResponse ack;
  bool alive = stream->Write(request) && stream->Read(&ack);
  const int64_t total = text.empty() ? static_cast<int64_t>(ids.size()) : text.size();
  for (int64_t at = 0; alive && at < total; at += chunk) {
    const int64_t n = std::min<int64_t>(chunk, total - at);
    request.Clear();
    pb::IngestChunk* c = request.mutable_chunk();
    if (text.empty()) {
      c->mutable_token_ids()->Add(ids.begin() + at, ids.begin() + at + n);
    } else {
      c->set_text(text.substr(at, n));
    }
    c->set_end_of_document(at + n == total);
    alive = stream->Write(request) && stream->Read(&ack);
  }
  stream->WritesDone();
  while (stream->Read(&ack)) {
  }
  if (!tally_->Record("Ingest", stream->Finish())) return -1;
  tally_->ingest_tokens += ack.document_tokens();
  return ack.document_tokens();
}

std::optional<std::vector<int>> BenchClient::Generate(const pb::GenerateRequest& request) {
  grpc::ClientContext context;
  SetDeadline(&context);
  const auto start = BenchClock::now();
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse response;
  std::vector<int> ids;
  Latencies latency;
  auto first = start, last = start;
  while (reader->Read(&response)) {
    if (response.done()) continue;  // the final message carries no token
    const auto now = BenchClock::now();
    if (ids.empty()) {
      latency.first_ms.push_back(Ms(now - start));
      first = now;
    } else {
      latency.per_token_ms.push_back(Ms(now - last));
    }
    last = now;
    ids.push_back(response.token_id());
  }
  if (!tally_->Record("Generate", reader->Finish())) return std::nullopt;
  if (ids.size() >= 2) latency.tpot_ms.push_back(Ms(last - first) / (ids.size() - 1));
  tally_->generated_tokens += ids.size();
  tally_->latency.Merge(latency);
  return ids;
}

std::optional<std::vector<int>> BenchClient::Ask(const std::string& session,
                                                 const std::string& question, int tokens) {
  pb::GenerateRequest request;
  request.set_session(session);
  request.set_question(question);
  request.set_max_tokens(tokens);
  request.set_ignore_eos(true);
  return Generate(request);
}

}  // namespace fot
