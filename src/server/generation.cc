// One generation query, shared by the front ends (see generation.h).
#include "src/server/generation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {

std::string StopMatcher::Add(const std::string& text) {
  held_ += text;
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that begins some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

absl::StatusOr<std::optional<Retrieval>> QueryRetrieval(const ManagedSession& session,
                                                        const std::string& spec,
                                                        const std::vector<std::string>& documents,
                                                        const Limits& limits) {
  if (spec.empty() && documents.empty()) return std::nullopt;
  Retrieval retrieval = session.session().options().retrieval;
  if (!spec.empty()) {
    auto parsed = ParseRetrieval(spec);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("retrieval: ", parsed.status().message()));
    }
    retrieval = *parsed;
  }
  FOT_RETURN_IF_ERROR(CheckRetrieval(retrieval, limits));
  for (const std::string& name : documents) {
    FOT_ASSIGN_OR_RETURN(DocumentInfo info, session.session().Document(name));
    retrieval.filter.documents.push_back(info.id);
  }
  return retrieval;
}

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kLength:
      break;
  }
  return "length";
}

absl::StatusOr<std::unique_ptr<Generation>> Generation::Prepare(
    SessionManager* manager, std::shared_ptr<ManagedSession> session, std::vector<int> question,
    const GenerationParams& params, ServerMetrics* metrics) {
  const Limits& limits = manager->options().limits;
  FOT_RETURN_IF_ERROR(CheckQueryTokens(static_cast<int64_t>(question.size()), "question", limits));
  QueryOptions options;
  options.sampling = params.sampling;
  FOT_RETURN_IF_ERROR(ValidateSamplingOptions(options.sampling));
  options.max_tokens = params.max_tokens == 0 ? kDefaultMaxTokens : params.max_tokens;
  if (options.max_tokens < 0 || options.max_tokens > kMaxTokensLimit) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens ", params.max_tokens,
                                                   " must lie in [1, ", kMaxTokensLimit,
                                                   "] (0: ", kDefaultMaxTokens, ")"));
  }
  const std::vector<std::string>& stops = params.stop;
  if (stops.size() > kMaxStops) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxStops, " stop strings"));
  }
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty() || stops[i].size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop[", i, "] has ", stops[i].size(),
                                                     " bytes; a stop string must have 1 to ",
                                                     kMaxStopBytes));
    }
  }
  options.stop_at_eos = !params.ignore_eos;
  FOT_ASSIGN_OR_RETURN(options.retrieval,
                       QueryRetrieval(*session, params.retrieval, params.documents, limits));
  options.trace = params.trace;
  options.trace_top = params.trace_top == 0 ? kDefaultTraceTop : params.trace_top;
  if (options.trace_top < 1 || options.trace_top > kMaxTop) {
    return absl::InvalidArgumentError(absl::StrCat("trace_top must lie in [1, ", kMaxTop, "]"));
  }
  options.keep_turn = params.keep_turn;
  std::unique_ptr<Generation> generation(
      new Generation(manager, session, std::move(question), stops, metrics));
  if (options.keep_turn) {
    FOT_ASSIGN_OR_RETURN(WriterLock lock,
                         WriterLock::Acquire(session, manager->options().writer_wait));
    generation->writer_lock_.emplace(std::move(lock));
    FOT_RETURN_IF_ERROR(manager->CheckCapacity(
        *session, static_cast<int64_t>(generation->question_.size()) + options.max_tokens, true));
  }
  generation->options_ = std::move(options);
  return generation;
}

absl::StatusOr<QueryResult> Generation::Run(const TokenSink& sink,
                                            std::function<bool()> cancelled) {
  ServerMetrics::StreamScope stream(metrics_, "generate");
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  bool first = true;
  options_.cancelled = std::move(cancelled);
  options_.on_token = [&](const GeneratedToken& token, const float* logits) {
    if (metrics_ != nullptr) {
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - last).count();
      if (first) {
        metrics_->ObserveTimeToFirstToken(seconds);
      } else {
        metrics_->ObserveInterTokenLatency(seconds);
      }
      metrics_->AddGeneratedToken();
      last = now;
    }
    first = false;
    const std::string text = stop_.Add(detokenize_.Feed(token.token));
    const bool go_on = sink(token, text, logits);
    return go_on && !stop_.stopped();
  };
  absl::StatusOr<QueryResult> result = session_->session().Generate(question_, options_);
  options_.on_token = nullptr;
  if (result.ok() && metrics_ != nullptr) metrics_->AddPromptTokens(result->prompt_tokens);
  return result;
}

absl::StatusOr<GenerationEnd> Generation::Finish(const QueryResult& result) {
  if (options_.keep_turn) FOT_RETURN_IF_ERROR(manager_->Persist(*session_));
  writer_lock_.reset();
  GenerationEnd end;
  end.prompt_tokens = result.prompt_tokens;
  end.generated_tokens = static_cast<int64_t>(result.tokens.size());
  if (stop_.stopped()) {
    end.finish = FinishReason::kStop;
    return end;
  }
  end.text = stop_.Add(detokenize_.Flush());
  end.text += stop_.Flush();
  const bool eos = !result.tokens.empty() && options_.stop_at_eos &&
                   result.tokens.back() == manager_->engine().config().eos_token_id;
  end.finish = eos ? FinishReason::kEos : FinishReason::kLength;
  return end;
}

}  // namespace fot
