// The OpenAI API's JSON: requests into GenerationParams, the chat template,
// responses, chunks and errors.
#include "src/http/openai_api.h"

#include <gtest/gtest.h>

namespace fot::http {
namespace {

using nlohmann::json;

// The `param` an error names (null when none).
json ParamOf(const absl::Status& status) { return ErrorJson(ErrorOf(status))["error"]["param"]; }

TEST(OpenAiApiTest, CompletionDefaultsFollowOpenAi) {
  auto r = ParseCompletionRequest(json{{"model", "notes"}, {"prompt", "?QXRB="}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->chat);
  EXPECT_EQ(r->model, "notes");
  EXPECT_EQ(r->prompt, "?QXRB=");
  EXPECT_EQ(r->params.max_tokens, kDefaultCompletionMaxTokens);
  EXPECT_EQ(r->params.sampling.temperature, 1.0f);
  EXPECT_EQ(r->params.sampling.top_p, 1.0f);
  EXPECT_FALSE(r->has_seed);
  EXPECT_FALSE(r->stream);
  EXPECT_TRUE(r->params.stop.empty());
  EXPECT_TRUE(r->params.retrieval.empty());
}

TEST(OpenAiApiTest, CompletionReadsSamplingStopStreamAndFotserveOptions) {
  auto r = ParseCompletionRequest(json::parse(R"({
      "model": "notes", "prompt": ["hello"], "max_tokens": 8, "temperature": 0, "top_p": 0.5,
      "seed": -3, "stop": ";", "stream": true, "stream_options": {"include_usage": true},
      "user": "ignored", "n": 1, "presence_penalty": 0, "logprobs": null,
      "fotserve": {"retrieval": "knn:32", "documents": ["a", "b"], "trace": true,
                   "trace_top": 4, "ignore_eos": true}})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt, "hello");
  EXPECT_EQ(r->params.max_tokens, 8);
  EXPECT_EQ(r->params.sampling.temperature, 0.0f);
  EXPECT_EQ(r->params.sampling.top_p, 0.5f);
  EXPECT_TRUE(r->has_seed);
  EXPECT_EQ(r->params.sampling.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_EQ(r->params.stop, std::vector<std::string>{";"});
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->params.retrieval, "knn:32");
  EXPECT_EQ(r->params.documents, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r->params.trace);
  EXPECT_EQ(r->params.trace_top, 4);
  EXPECT_TRUE(r->params.ignore_eos);
}

TEST(OpenAiApiTest, PromptsAsTokenIds) {
  auto flat = ParseCompletionRequest(json{{"model", "m"}, {"prompt", {5, 6, 7}}});
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(flat->prompt_token_ids, (std::vector<int>{5, 6, 7}));
  auto nested = ParseCompletionRequest(json{{"model", "m"}, {"prompt", {{5, 6}}}});
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(nested->prompt_token_ids, (std::vector<int>{5, 6}));
}

// Each malformed or unsupported request, and the field its error names.
TEST(OpenAiApiTest, BadCompletionRequestsNameTheirField) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"prompt": "x"})", "model"},
      {R"({"model": 3, "prompt": "x"})", "model"},
      {R"({"model": "m"})", "prompt"},
      {R"({"model": "m", "prompt": ""})", "prompt"},
      {R"({"model": "m", "prompt": ["a", "b"]})", "prompt"},
      {R"({"model": "m", "prompt": [-1]})", "prompt"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 0})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": -5})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 1e9})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": "8"})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "max_tokens": 70000})", "max_tokens"},
      {R"({"model": "m", "prompt": "x", "temperature": 2.5})", "temperature"},
      {R"({"model": "m", "prompt": "x", "top_p": 0})", "top_p"},
      {R"({"model": "m", "prompt": "x", "seed": 1.5})", "seed"},
      {R"({"model": "m", "prompt": "x", "stop": [";", 3]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop"},
      {R"({"model": "m", "prompt": "x", "stop": ""})", "stop"},
      {R"({"model": "m", "prompt": "x", "stream": "yes"})", "stream"},
      {R"({"model": "m", "prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options"},
      {R"({"model": "m", "prompt": "x", "n": 2})", "n"},
      {R"({"model": "m", "prompt": "x", "echo": true})", "echo"},
      {R"({"model": "m", "prompt": "x", "logprobs": 3})", "logprobs"},
      {R"({"model": "m", "prompt": "x", "best_of": 2})", "best_of"},
      {R"({"model": "m", "prompt": "x", "suffix": "end"})", "suffix"},
      {R"({"model": "m", "prompt": "x", "frequency_penalty": 0.5})", "frequency_penalty"},
      {R"({"model": "m", "prompt": "x", "logit_bias": {"5": 1}})", "logit_bias"},
      {R"({"model": "m", "prompt": "x", "fotserve": []})", "fotserve"},
      {R"({"model": "m", "prompt": "x", "fotserve": {"retreival": "knn:8"}})",
       "fotserve.retreival"},
      {R"({"model": "m", "prompt": "x", "fotserve": {"trace_top": 0}})", "fotserve.trace_top"},
      {R"({"model": "m", "prompt": "x", "fotserve": {"documents": "a"}})", "fotserve.documents"},
  };
  for (const auto& [body, param] : cases) {
    auto r = ParseCompletionRequest(json::parse(body));
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(ParamOf(r.status()), param) << body << ": " << r.status();
    EXPECT_EQ(ErrorOf(r.status()).http_status, 400);
  }
  EXPECT_FALSE(ParseCompletionRequest(json::array()).ok());
}

TEST(OpenAiApiTest, ChatRendersThePlainTemplateAndStopsAtTheNextUserTurn) {
  auto r = ParseChatRequest(json::parse(R"({
      "model": "notes", "max_completion_tokens": 12, "stop": ["END"],
      "messages": [
        {"role": "system", "content": "Answer from memory."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is "},
                                      {"type": "text", "text": "QXRB?"}]},
        {"role": "assistant", "content": "7301."},
        {"role": "tool", "content": "ok"},
        {"role": "user", "content": "And MNTV?", "name": "ann"}]})"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->chat);
  EXPECT_EQ(r->prompt,
            "System: Answer from memory.\n"
            "System: Be brief.\n"
            "User: What is QXRB?\n"
            "Assistant: 7301.\n"
            "Tool: ok\n"
            "User: And MNTV?\n"
            "Assistant:");
  EXPECT_EQ(r->messages.size(), 6u);
  EXPECT_EQ(r->params.max_tokens, 12);
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"END", std::string(kChatStop)}));
}

TEST(OpenAiApiTest, ChatDefaultsAndItsOwnErrors) {
  auto r =
      ParseChatRequest(json{{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt, "User: hi\nAssistant:");
  EXPECT_EQ(r->params.max_tokens, kDefaultChatMaxTokens);
  EXPECT_EQ(r->params.stop, std::vector<std::string>{std::string(kChatStop)});

  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"model": "m"})", "messages"},
      {R"({"model": "m", "messages": []})", "messages"},
      {R"({"model": "m", "messages": ["hi"]})", "messages[0]"},
      {R"({"model": "m", "messages": [{"role": "robot", "content": "x"}]})", "messages[0].role"},
      {R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
           "tools": [{"type": "function"}]})",
       "tools"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_object"}})",
       "response_format"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": true})",
       "logprobs"},
      {R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
           "max_completion_tokens": 0})",
       "max_completion_tokens"},
  };
  for (const auto& [body, param] : cases) {
    auto bad = ParseChatRequest(json::parse(body));
    ASSERT_FALSE(bad.ok()) << body;
    EXPECT_EQ(ParamOf(bad.status()), param) << body << ": " << bad.status();
  }
}

TEST(OpenAiApiTest, StatusesBecomeOpenAiErrorsWithTheirHttpStatus) {
  const json not_found = ErrorJson(ErrorOf(absl::NotFoundError("no session 'x'"), true));
  EXPECT_EQ(not_found, json::parse(R"({"error": {"message": "no session 'x'",
      "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})"));
  EXPECT_EQ(ErrorOf(absl::NotFoundError("x"), true).http_status, 404);
  EXPECT_EQ(ErrorOf(absl::NotFoundError("no document 'd'")).code, "not_found");

  const ApiError unauthenticated = ErrorOf(absl::UnauthenticatedError("no key"));
  EXPECT_EQ(unauthenticated.http_status, 401);
  EXPECT_EQ(unauthenticated.code, "invalid_api_key");
  EXPECT_EQ(ErrorOf(absl::PermissionDeniedError("x")).http_status, 403);
  EXPECT_EQ(ErrorOf(absl::ResourceExhaustedError("x")).http_status, 429);
  EXPECT_EQ(ErrorOf(absl::UnavailableError("loading")).http_status, 503);
  EXPECT_EQ(ErrorOf(absl::UnavailableError("loading")).type, "server_error");
  EXPECT_EQ(ErrorOf(absl::AbortedError("x")).http_status, 409);
  EXPECT_EQ(ErrorOf(absl::DeadlineExceededError("x")).http_status, 504);
  EXPECT_EQ(ErrorOf(absl::InternalError("x")).http_status, 500);
  EXPECT_EQ(ErrorOf(absl::FailedPreconditionError("x")).http_status, 400);

  const json plain = ErrorJson(ErrorOf(absl::InvalidArgumentError("bad")));
  EXPECT_TRUE(plain["error"]["param"].is_null());
  EXPECT_TRUE(plain["error"]["code"].is_null());
}

TEST(OpenAiApiTest, WholeResponses) {
  const ResponseIds ids{"cmpl-1", 1700000000, "notes"};
  EXPECT_EQ(CompletionResponse(false, ids, "7301", FinishReason::kEos, 10, 3, nullptr),
            json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
                "model": "notes",
                "choices": [{"index": 0, "text": "7301", "logprobs": null,
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})"));
  const json tokens = json::array({{{"token_id", 5}}});
  const json chat = CompletionResponse(true, ids, "hi", FinishReason::kLength, 4, 2, &tokens);
  EXPECT_EQ(chat["object"], "chat.completion");
  EXPECT_EQ(chat["choices"][0]["message"],
            json::parse(R"({"role": "assistant", "content": "hi"})"));
  EXPECT_EQ(chat["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(chat["fotserve"]["tokens"], tokens);
}

TEST(OpenAiApiTest, StreamChunks) {
  const ResponseIds ids{"chatcmpl-1", 5, "notes"};
  const json first = CompletionChunk(true, ids, "", true, std::nullopt, nullptr);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], json::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(CompletionChunk(true, ids, "ab", false, std::nullopt, nullptr)["choices"][0]["delta"],
            json::parse(R"({"content": "ab"})"));
  const json last = CompletionChunk(true, ids, "", false, FinishReason::kStop, nullptr);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");

  const json text = CompletionChunk(false, ids, "x", true, std::nullopt, nullptr);
  EXPECT_EQ(text["object"], "text_completion");
  EXPECT_EQ(text["choices"][0]["text"], "x");

  const json usage = UsageChunk(true, ids, 7, 2);
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 9);

  EXPECT_EQ(SseEvent(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(kSseDone, "data: [DONE]\n\n");
  // Text that is not UTF-8 never makes the response fail.
  EXPECT_EQ(Dump(json("a\xff")), "\"a\xEF\xBF\xBD\"");
}

TEST(OpenAiApiTest, FinishReasons) {
  EXPECT_EQ(OpenAiFinishReason(FinishReason::kStop), "stop");
  EXPECT_EQ(OpenAiFinishReason(FinishReason::kEos), "stop");
  EXPECT_EQ(OpenAiFinishReason(FinishReason::kLength), "length");
}

}  // namespace
}  // namespace fot::http
