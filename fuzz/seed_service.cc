// Seeds of the service harness (seed_writers.h): call sequences as
// service_input.h lays them out, over the sessions every input starts with.
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "fuzz/seed_writers.h"
#include "fuzz/service_input.h"
#include "proto/fot.pb.h"

namespace fot::fuzz {
namespace {

namespace pb = ::fot::v1;

std::vector<std::string> Ingest(const std::string& session, const std::string& document,
                                const std::vector<std::string>& chunks, bool resume = false) {
  pb::IngestRequest open;
  open.mutable_open()->set_session(session);
  open.mutable_open()->set_document(document);
  open.mutable_open()->set_resume(resume);
  std::vector<std::string> parts = {CallPart(Rpc::kIngest, open)};
  for (size_t i = 0; i < chunks.size(); ++i) {
    pb::IngestRequest chunk;
    chunk.mutable_chunk()->set_text(chunks[i]);
    chunk.mutable_chunk()->set_end_of_document(i + 1 == chunks.size());
    parts.push_back(CallPart(Rpc::kIngest, chunk));
  }
  return parts;
}

std::vector<std::string> IngestIds(const std::string& session) {
  pb::IngestRequest open, chunk;
  open.mutable_open()->set_session(session);
  open.mutable_open()->set_document("ids");
  for (int id : {5, 17, 33, 2, 399}) chunk.mutable_chunk()->add_token_ids(id);
  chunk.mutable_chunk()->set_end_of_document(true);
  return {CallPart(Rpc::kIngest, open), CallPart(Rpc::kIngest, chunk)};
}

pb::GenerateRequest Question(const std::string& session) {
  pb::GenerateRequest request;
  request.set_session(session);
  request.set_question(" what does the river see?");
  request.set_max_tokens(4);
  request.set_ignore_eos(true);
  return request;
}

std::string Generate(const std::string& session, bool trace, const std::string& retrieval = "") {
  pb::GenerateRequest request = Question(session);
  request.set_trace(trace);
  request.set_trace_top(3);
  request.set_retrieval(retrieval);
  request.set_return_logits(trace);
  request.add_stop(" the");
  return CallPart(Rpc::kGenerate, request);
}

std::string Create(const std::string& name, const std::string& retrieval, const std::string& index,
                   const std::string& attention) {
  pb::CreateSessionRequest request;
  request.set_name(name);
  request.mutable_options()->set_retrieval(retrieval);
  request.mutable_options()->set_index(index);
  request.mutable_options()->set_attention(attention);
  if (attention == "lambda") {
    request.mutable_options()->set_n_global(2);
    request.mutable_options()->set_local_window(8);
    request.mutable_options()->set_memory_positioning("fixed_distance");
    request.mutable_options()->set_memory_layers("1");
  }
  return CallPart(Rpc::kCreateSession, request);
}

std::vector<std::string> Inspection(const std::string& session) {
  pb::MemoryStatsRequest stats;
  stats.set_session(session);
  pb::ListEntriesRequest list;
  list.set_session(session);
  list.set_layer(1);
  list.set_page_size(3);
  list.set_offset(2);
  pb::EntryContextRequest context;
  context.set_session(session);
  context.set_id(4);
  context.set_radius(3);
  pb::SearchMemoryRequest search;
  search.set_session(session);
  search.set_text(" the river");
  search.set_top(2);
  pb::ScoreRequest score;
  score.set_session(session);
  score.set_context(" the quiet house");
  score.set_continuation(" sees birds");
  return {CallPart(Rpc::kMemoryStats, stats), CallPart(Rpc::kListEntries, list),
          CallPart(Rpc::kEntryContext, context), CallPart(Rpc::kSearchMemory, search),
          CallPart(Rpc::kScore, score)};
}

std::vector<std::string> Lifecycle() {
  pb::GetSessionRequest get;
  get.set_session("new");
  pb::DeleteDocumentRequest del_doc;
  del_doc.set_session("new");
  del_doc.set_document("d");
  pb::DeleteSessionRequest del;
  del.set_session("new");
  std::vector<std::string> parts = {Create("new", "knn:4", "hnsw:m=8", "fot")};
  for (std::string& part : Ingest("new", "d", {"the river ", "sees  birds", " and a window."})) {
    parts.push_back(std::move(part));
  }
  parts.push_back(CallPart(Rpc::kGetSession, get));
  parts.push_back(CallPart(Rpc::kDeleteDocument, del_doc));
  parts.push_back(Generate("new", true));
  parts.push_back(CallPart(Rpc::kDeleteSession, del));
  parts.push_back(CallPart(Rpc::kListSessions, pb::ListSessionsRequest()));
  return parts;
}

std::vector<std::string> Snapshots() {
  pb::SaveSessionRequest save;
  save.set_session(kFotSession);
  save.set_snapshot("snap");
  pb::LoadSessionRequest load;
  load.set_snapshot("snap");
  load.set_session("copy");
  return {CallPart(Rpc::kSaveSession, save), CallPart(Rpc::kLoadSession, load),
          Generate("copy", false, "knn:2:exact")};
}

std::vector<std::string> KeepTurn() {
  pb::GenerateRequest request = Question(kLambdaSession);
  request.set_keep_turn(true);
  request.set_temperature(0.8f);
  request.set_top_p(0.9f);
  request.set_seed(7);
  request.add_documents("doc");
  return {CallPart(Rpc::kGenerate, request), Generate(kLambdaSession, true)};
}

}  // namespace

void WriteServiceSeeds(const std::string& dir) {
  WriteSeed(dir, "server_info",
            JoinParts({CallPart(Rpc::kGetServerInfo, pb::GetServerInfoRequest())}));
  WriteSeed(dir, "generate_fot", JoinParts({Generate(kFotSession, true)}));
  WriteSeed(dir, "generate_lambda_knn", JoinParts({Generate(kLambdaSession, false, "knn:2")}));
  WriteSeed(dir, "inspect_fot", JoinParts(Inspection(kFotSession)));
  WriteSeed(dir, "inspect_lambda", JoinParts(Inspection(kLambdaSession)));
  WriteSeed(dir, "lifecycle", JoinParts(Lifecycle()));
  WriteSeed(dir, "snapshots", JoinParts(Snapshots()));
  WriteSeed(dir, "keep_turn", JoinParts(KeepTurn()));
  WriteSeed(dir, "ingest_resume",
            JoinParts(Ingest(kFotSession, "doc2", {"more text ", "here"}, true)));
  WriteSeed(dir, "ingest_ids", JoinParts(IngestIds(kFotSession)));
  WriteSeed(dir, "create_lambda",
            JoinParts({Create("lam2", "dense", "ivf:nlist=2,train_size=8", "lambda"),
                       Generate("lam2", false)}));
}

}  // namespace fot::fuzz
