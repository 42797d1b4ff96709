// fotctl ask (streamed generation, optionally traced) and fotctl score.
#include <cmath>
#include <csignal>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "client/cli.h"
#include "client/commands.h"
#include "client/progress.h"
#include "client/proto_json.h"
#include "client/table.h"
#include "client/text_check.h"
#include "client/trace_view.h"

namespace fot::client {
namespace {

constexpr int kTraceRadius = 6;  // token positions of context around a traced entry

volatile std::sig_atomic_t interrupted = 0;
void OnInterrupt(int) { interrupted = 1; }

struct Token {
  int id;
  std::string text;
  std::string piece;
  google::protobuf::RepeatedPtrField<fot::v1::LayerRetrieval> trace;
};

void PrintTrace(const Connection& c, const std::string& session, const std::vector<Token>& tokens,
                int top) {
  EntryContextCache contexts(&c, session, kTraceRadius);
  Table table({"#", "token", "layer", "head", "document", "pos", "context", "share"});
  table.AlignRight(0).AlignRight(2).AlignRight(3).AlignRight(5).AlignRight(7);
  for (size_t i = 0; i < tokens.size(); ++i) {
    // A token whose text the server held back (a space before the answer, a
    // stop string, part of a character) shows its piece instead.
    std::vector<std::string> lead = {std::to_string(i),
                                     tokens[i].text.empty()
                                         ? absl::StrCat("(", Printable(tokens[i].piece, 16), ")")
                                         : absl::StrCat("\"", Printable(tokens[i].text, 16), "\"")};
    bool any = false;
    for (const auto& layer : tokens[i].trace) {
      const std::vector<TopEntry> top_entries = TopEntries(layer, top);
      if (top_entries.empty()) continue;
      AddTraceRows(table, lead, top_entries, contexts);
      lead = {"", ""};
      any = true;
    }
    if (!any) table.AddRow({lead[0], lead[1], "", "", "(memory empty)"});
  }
  std::printf(
      "\ntrace: per generated token, the %d memory entries of each memory layer with the "
      "largest attention share (share: of the head's attention mass)\n",
      top);
  std::fputs(table.Render().c_str(), stdout);
}

}  // namespace

absl::Status Ask(const Connection& c, const Output& out, const std::string& session,
                 const std::string& question, const AskOptions& options) {
  fot::v1::GenerateRequest request;
  request.set_session(session);
  request.set_question(question);
  request.set_max_tokens(options.max_tokens);
  request.set_temperature(options.temperature);
  request.set_top_p(options.top_p);
  request.set_seed(options.seed);
  for (const std::string& s : options.stop) request.add_stop(s);
  for (const std::string& d : options.documents) request.add_documents(d);
  request.set_retrieval(options.retrieval);
  request.set_keep_turn(options.keep_turn);
  request.set_ignore_eos(options.ignore_eos);
  request.set_trace(options.trace);
  request.set_trace_top(options.trace ? std::max(options.trace_top, 1) : 0);

  FOT_RETURN_IF_ERROR(CheckText(request));

  grpc::ClientContext context;
  // Ctrl-C cancels the call; the server stops generating after the current token.
  interrupted = 0;
  std::signal(SIGINT, OnInterrupt);
  std::atomic<bool> finished{false};
  std::thread watcher([&] {
    while (!finished.load()) {
      if (interrupted) {
        context.TryCancel();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  std::unique_ptr<grpc::ClientReader<fot::v1::GenerateResponse>> reader =
      c.stub->Generate(&context, request);
  fot::v1::GenerateResponse response;
  fot::v1::GenerateResponse final_message;
  std::vector<Token> tokens;
  std::string text;
  while (reader->Read(&response)) {
    text += response.text();
    if (!out.json && !response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
    }
    if (response.done()) {
      final_message = response;
      continue;
    }
    tokens.push_back({response.token_id(), response.text(), response.piece(), response.trace()});
  }
  const grpc::Status status = reader->Finish();
  finished = true;
  watcher.join();
  std::signal(SIGINT, SIG_DFL);
  if (!out.json && !text.empty() && text.back() != '\n') std::fputc('\n', stdout);
  if (interrupted) return Interrupted();
  if (!status.ok()) return FromGrpc(status, c.address);

  if (out.json) {
    nlohmann::json token_list = nlohmann::json::array();
    for (const Token& t : tokens) {
      nlohmann::json token = {{"id", t.id}, {"text", t.text}, {"piece", t.piece}};
      if (options.trace) {
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& layer : t.trace) layers.push_back(ToJson(layer));
        token["trace"] = layers;
      }
      token_list.push_back(token);
    }
    PrintJson({{"session", session},
               {"question", question},
               {"text", text},
               {"finish_reason", final_message.finish_reason()},
               {"prompt_tokens", final_message.prompt_tokens()},
               {"generated_tokens", final_message.generated_tokens()},
               {"tokens", token_list}});
    return absl::OkStatus();
  }
  if (options.trace) PrintTrace(c, session, tokens, std::max(options.trace_top, 1));
  return absl::OkStatus();
}

absl::Status Score(const Connection& c, const Output& out, const std::string& session,
                   const std::string& context_text, const std::string& continuation,
                   const std::string& retrieval) {
  fot::v1::ScoreRequest request;
  request.set_session(session);
  request.set_context(context_text);
  request.set_continuation(continuation);
  request.set_retrieval(retrieval);
  FOT_RETURN_IF_ERROR(CheckText(request));
  grpc::ClientContext context;
  fot::v1::ScoreResponse response;
  const grpc::Status status = c.stub->Score(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, c.address);
  if (out.json) {
    nlohmann::json token_scores = nlohmann::json::array();
    for (const auto& t : response.token_scores()) {
      token_scores.push_back({{"token_id", t.token_id()},
                              {"piece", t.piece()},
                              {"text", t.text()},
                              {"log_prob", t.log_prob()}});
    }
    PrintJson(
        {{"session", session},
         {"log_likelihood", response.log_likelihood()},
         {"perplexity", response.perplexity()},
         {"tokens", response.token_log_probs_size()},
         {"token_log_probs",
          std::vector<float>(response.token_log_probs().begin(), response.token_log_probs().end())},
         {"continuation_token_ids", std::vector<int>(response.continuation_token_ids().begin(),
                                                     response.continuation_token_ids().end())},
         {"token_scores", token_scores}});
    return absl::OkStatus();
  }
  std::printf("log-likelihood  %.4f (natural log, %d tokens)\nperplexity      %.3f\n",
              response.log_likelihood(), response.token_log_probs_size(), response.perplexity());
  // One row per continuation token: its piece, the text it completes (empty
  // for a byte of a longer character), log p and p, the least likely marked.
  int least = -1;
  for (int i = 0; i < response.token_scores_size(); ++i) {
    if (least < 0 ||
        response.token_scores(i).log_prob() < response.token_scores(least).log_prob()) {
      least = i;
    }
  }
  Table table({"#", "token id", "piece", "text", "log p", "p", ""});
  table.AlignRight(0).AlignRight(1).AlignRight(4).AlignRight(5);
  for (int i = 0; i < response.token_scores_size(); ++i) {
    const fot::v1::TokenScore& t = response.token_scores(i);
    table.AddRow({std::to_string(i), std::to_string(t.token_id()), Printable(t.piece(), 24),
                  Printable(t.text(), 24), absl::StrFormat("%.4f", t.log_prob()),
                  Percent(std::exp(t.log_prob())), i == least ? "<- least likely" : ""});
  }
  std::fputs(table.Render().c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace fot::client
