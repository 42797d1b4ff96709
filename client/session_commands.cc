// fotctl info and fotctl sessions create|ls|show|rm.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "client/commands.h"
#include "client/progress.h"
#include "client/proto_json.h"
#include "client/table.h"
#include "client/text_check.h"

namespace fot::client {

std::string AttentionSummary(const fot::v1::SessionOptions& o) {
  if (o.attention() != "lambda") return o.attention().empty() ? "fot" : o.attention();
  std::string text = absl::StrCat("lambda n_global=", o.n_global(), " L=", o.local_window());
  if (!o.memory_positioning().empty()) absl::StrAppend(&text, " memory=", o.memory_positioning());
  if (!o.memory_layers().empty()) absl::StrAppend(&text, " layers=", o.memory_layers());
  return text;
}

absl::Status ServerInfo(const Connection& c, const Output& out) {
  grpc::ClientContext context;
  fot::v1::ServerInfo info;
  const grpc::Status status = c.stub->GetServerInfo(&context, {}, &info);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson(ToJson(info));
    return absl::OkStatus();
  }
  const auto& d = info.default_options();
  std::printf(
      "server           %s\n"
      "model            %s (%s)\n"
      "shape            %d layers, hidden %d, %d heads / %d kv heads, vocab %d\n"
      "window           W %d, L %d\n"
      "memory layers    %s\n"
      "defaults         retrieval %s, index %s, dtype %s\n"
      "sessions         %d of at most %d\n",
      c.address.c_str(), info.model_dir().c_str(), info.model_type().c_str(), info.num_layers(),
      info.hidden_size(), info.num_heads(), info.num_kv_heads(), info.vocab_size(), info.window(),
      info.last_context_length(), absl::StrJoin(info.memory_layers(), ",").c_str(),
      d.retrieval().c_str(), d.index().c_str(), d.memory_dtype().c_str(), info.sessions(),
      info.max_sessions());
  return absl::OkStatus();
}

absl::Status CreateSession(const Connection& c, const Output& out, const std::string& name,
                           const CreateOptions& options) {
  fot::v1::CreateSessionRequest request;
  request.set_name(name);
  request.mutable_options()->set_retrieval(options.retrieval);
  request.mutable_options()->set_index(options.index);
  request.mutable_options()->set_memory_dtype(options.memory_dtype);
  request.mutable_options()->set_last_context_length(options.last_context_length);
  request.mutable_options()->set_attention(options.attention);
  if (options.n_global.has_value()) request.mutable_options()->set_n_global(*options.n_global);
  request.mutable_options()->set_local_window(options.local_window);
  request.mutable_options()->set_memory_positioning(options.memory_positioning);
  request.mutable_options()->set_memory_layers(options.memory_layers);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::SessionInfo info;
  const grpc::Status status = c.stub->CreateSession(&context, request, &info);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson(ToJson(info));
  } else {
    std::printf("created session '%s': retrieval %s, index %s, memory dtype %s, attention %s\n",
                info.name().c_str(), info.options().retrieval().c_str(),
                info.options().index().c_str(), info.options().memory_dtype().c_str(),
                AttentionSummary(info.options()).c_str());
  }
  return absl::OkStatus();
}

absl::Status ListSessions(const Connection& c, const Output& out) {
  grpc::ClientContext context;
  fot::v1::ListSessionsResponse response;
  const grpc::Status status = c.stub->ListSessions(&context, {}, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    nlohmann::json sessions = nlohmann::json::array();
    for (const auto& s : response.sessions()) sessions.push_back(ToJson(s));
    PrintJson({{"sessions", sessions},
               {"snapshots", std::vector<std::string>(response.snapshots().begin(),
                                                      response.snapshots().end())}});
    return absl::OkStatus();
  }
  if (response.sessions().empty()) {
    std::printf("no sessions\n");
  } else {
    Table table({"session", "documents", "tokens", "committed", "memory", "retrieval", "index",
                 "attention"});
    table.AlignRight(1).AlignRight(2).AlignRight(3).AlignRight(4);
    for (const auto& s : response.sessions()) {
      table.AddRow({s.name(), GroupThousands(s.document_count()), GroupThousands(s.stream_tokens()),
                    GroupThousands(s.committed_tokens()), HumanBytes(s.memory_bytes()),
                    s.options().retrieval(), s.options().index(), AttentionSummary(s.options())});
    }
    std::fputs(table.Render().c_str(), stdout);
  }
  if (!response.snapshots().empty()) {
    std::printf("snapshots: %s\n", absl::StrJoin(response.snapshots(), ", ").c_str());
  }
  return absl::OkStatus();
}

absl::Status ShowSession(const Connection& c, const Output& out, const std::string& name) {
  absl::StatusOr<fot::v1::SessionInfo> got = GetSession(c, name);
  if (!got.ok()) return got.status();
  const fot::v1::SessionInfo& info = *got;
  if (out.json) {
    PrintJson(ToJson(info));
    return absl::OkStatus();
  }
  const auto& o = info.options();
  if (o.attention() == "lambda") {
    std::printf("session '%s': retrieval %s, index %s, memory dtype %s, attention %s\n",
                info.name().c_str(), o.retrieval().c_str(), o.index().c_str(),
                o.memory_dtype().c_str(), AttentionSummary(o).c_str());
  } else {
    std::printf("session '%s': retrieval %s, index %s, memory dtype %s, L %d, attention %s\n",
                info.name().c_str(), o.retrieval().c_str(), o.index().c_str(),
                o.memory_dtype().c_str(), o.last_context_length(), AttentionSummary(o).c_str());
  }
  std::printf("%s tokens, %s committed to memory, %s of memory\n",
              GroupThousands(info.stream_tokens()).c_str(),
              GroupThousands(info.committed_tokens()).c_str(),
              HumanBytes(info.memory_bytes()).c_str());
  if (info.documents().empty()) {
    std::printf("no documents\n");
    return absl::OkStatus();
  }
  Table table({"#", "document", "first token", "tokens", "state"});
  table.AlignRight(0).AlignRight(2).AlignRight(3);
  for (const auto& d : info.documents()) {
    std::string state = d.deleted() ? "deleted" : d.complete() ? "complete" : "open";
    if (!d.complete() && !d.deleted()) {
      state += absl::StrCat(" (resume at ", d.resume_offset(), d.text() ? " bytes)" : " tokens)");
    }
    table.AddRow({std::to_string(d.index()), d.name(), GroupThousands(d.first_token()),
                  GroupThousands(d.tokens()), state});
  }
  std::fputs(table.Render().c_str(), stdout);
  return absl::OkStatus();
}

absl::Status DeleteSession(const Connection& c, const Output& out, const std::string& name) {
  fot::v1::DeleteSessionRequest request;
  request.set_session(name);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::DeleteSessionResponse response;
  const grpc::Status status = c.stub->DeleteSession(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    PrintJson({{"deleted", name}});
  } else {
    std::printf("deleted session '%s'\n", name.c_str());
  }
  return absl::OkStatus();
}

}  // namespace fot::client
