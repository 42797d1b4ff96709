// The OpenAI API's JSON, as fot-server's HTTP port speaks it: completion and
// chat requests parsed into GenerationParams (chats rendered by a chat
// template, chat_template.h), and the responses, stream chunks, model
// objects and errors written back. Everything here is pure (JSON in, JSON
// out) so that it is tested without a server; http_server.cc does the I/O.
//
// Requests: the `model` field names a session. Fields fotserve does not
// implement are refused when they would change the answer (n > 1, echo,
// logprobs, best_of, suffix, tools, penalties, logit_bias, response formats
// other than text) and ignored otherwise (user, metadata, ...). fotserve's
// own options go in the object field `fotserve`, which OpenAI clients pass
// through untouched (as `extra_body` in the Python SDK):
//
//   "fotserve": {"retrieval": "knn:64", "documents": ["a.txt"], "trace": true,
//                "trace_top": 8, "ignore_eos": false}
//
// Errors: InvalidArgument statuses made by InvalidParam carry the name of
// the offending field, which ErrorOf puts in the error's `param`.
//
// Knows nothing of gRPC; the HTTP library is http_server.cc's.
#ifndef FOTSERVE_SRC_HTTP_OPENAI_API_H_
#define FOTSERVE_SRC_HTTP_OPENAI_API_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "src/http/chat_template.h"
#include "src/server/generation.h"
#include "src/server/query_provenance.h"

namespace fot::http {

// OpenAI's limit on stop strings per request.
inline constexpr int kMaxOpenAiStops = 4;
// max_tokens when a request leaves it out: OpenAI's for completions; for
// chat, where OpenAI runs to the end of the context, fotserve's default.
inline constexpr int kDefaultCompletionMaxTokens = 16;
inline constexpr int kDefaultChatMaxTokens = kDefaultMaxTokens;

// --- errors ------------------------------------------------------------------

// An error as the OpenAI API answers it:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;                  // "invalid_request_error", "server_error", ...
  std::optional<std::string> param;  // the request field at fault
  std::optional<std::string> code;   // "model_not_found", "invalid_api_key", ...
};

// InvalidArgument naming `param` (the JSON field) for ErrorOf.
absl::Status InvalidParam(std::string_view param, std::string_view message);

// The HTTP status of an absl::Status code (the Google API mapping: 400
// InvalidArgument / FailedPrecondition / OutOfRange, 401 Unauthenticated, 403
// PermissionDenied, 404 NotFound, 409 AlreadyExists / Aborted, 429
// ResourceExhausted, 499 Cancelled, 501 Unimplemented, 503 Unavailable, 504
// DeadlineExceeded, 500 otherwise).
int HttpStatusOf(absl::StatusCode code);

// The OpenAI error of a failed status; `model_lookup` marks a NotFound from
// looking up the request's model (code "model_not_found").
ApiError ErrorOf(const absl::Status& status, bool model_lookup = false);
nlohmann::json ErrorJson(const ApiError& error);

// --- requests ----------------------------------------------------------------

struct CompletionRequest {
  bool chat = false;
  std::string model;  // the session
  // Completions: the prompt as text, or as token ids. Chat: the messages and
  // the prompt the chat template made of them.
  std::string prompt;
  std::vector<int> prompt_token_ids;
  std::vector<ChatMessage> messages;
  // max_tokens, temperature, top_p, stop and the fotserve options; seed is
  // set only when the request has one (has_seed).
  GenerationParams params;
  bool has_seed = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// The body of POST /v1/completions and POST /v1/chat/completions.
// InvalidArgument (via InvalidParam) for anything malformed or unsupported.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(const nlohmann::json& body);
// A chat's messages are rendered by `chat_template` (chat_template.h), whose
// stop strings join the request's; a message of a role the template lacks is
// refused.
absl::StatusOr<CompletionRequest> ParseChatRequest(
    const nlohmann::json& body, const ChatTemplate& chat_template = PlainChatTemplate());

// --- responses ---------------------------------------------------------------

// What identifies one response and each of its chunks.
struct ResponseIds {
  std::string id;       // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// OpenAI's finish_reason: "stop" (a stop string or the end-of-sequence
// token) or "length".
std::string_view OpenAiFinishReason(FinishReason reason);

nlohmann::json UsageJson(int64_t prompt_tokens, int64_t completion_tokens);

// A whole (non-streamed) answer. `tokens`, when not null, is fotserve's
// per-token detail (trace) and goes in a `fotserve` field.
nlohmann::json CompletionResponse(bool chat, const ResponseIds& ids, const std::string& text,
                                  FinishReason finish, int64_t prompt_tokens,
                                  int64_t completion_tokens, const nlohmann::json* tokens);

// One chunk of a streamed answer: `text` (chat: the delta's content; the
// first chunk of a chat also carries the role), the finish reason on the
// last one, and fotserve's per-token detail when not null.
nlohmann::json CompletionChunk(bool chat, const ResponseIds& ids, const std::string& text,
                               bool first, std::optional<FinishReason> finish,
                               const nlohmann::json* token);
// The chunk stream_options.include_usage adds after the last: no choices.
nlohmann::json UsageChunk(bool chat, const ResponseIds& ids, int64_t prompt_tokens,
                          int64_t completion_tokens);

// fotserve's detail of one generated token: its id, piece and text, and with
// a trace what each memory layer and head retrieved for it.
nlohmann::json TokenJson(int token_id, const std::string& piece, const std::string& text,
                         const QueryProvenance* provenance,
                         const std::vector<AttentionTrace>* traces);

// A server-sent event carrying `data` ("data: ...\n\n").
std::string SseEvent(const nlohmann::json& data);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// JSON text, with any invalid UTF-8 replaced (text fields are UTF-8 already).
std::string Dump(const nlohmann::json& value);

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_OPENAI_API_H_
