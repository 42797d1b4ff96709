// How /v1/chat/completions turns messages into one prompt: the model's own
// chat template when its folder has a `chat_template.json`, else the plain
// template. Every template has the same shape, a prefix and a suffix around
// each message by role, then the text that opens the answer:
//
//   {
//     "system":    {"prefix": "<|system|>\n",    "suffix": "<|end|>\n"},
//     "user":      {"prefix": "<|user|>\n",      "suffix": "<|end|>\n"},
//     "assistant": {"prefix": "<|assistant|>\n", "suffix": "<|end|>\n"},
//     "tool":      {"prefix": "<|tool|>\n",      "suffix": "<|end|>\n"},
//     "generation_prompt": "<|assistant|>\n",
//     "stop": ["<|end|>", "<|user|>"]
//   }
//
// system, user and assistant are required, tool is optional (without it a
// tool message is refused); prefix, suffix and generation_prompt default to
// "". `stop` (at most kMaxTemplateStops strings) is added to every chat
// request's own: where the model ends its turn. "developer" messages use the
// system role. Strings are plain text, tokenized with the rest of the prompt.
//
// Hugging Face folders carry Jinja templates (tokenizer_config.json's
// `chat_template`); fotserve renders no Jinja, so such a folder gets the
// plain template and a notice saying so.
//
// Knows nothing of HTTP; pure apart from LoadChatTemplate's file reads.
#ifndef FOTSERVE_SRC_HTTP_CHAT_TEMPLATE_H_
#define FOTSERVE_SRC_HTTP_CHAT_TEMPLATE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/env.h"

namespace fot::http {

struct ChatMessage {
  std::string role;  // system, developer, user, assistant, tool
  std::string content;
};

// The file fotserve reads from a model folder.
inline constexpr char kChatTemplateFile[] = "chat_template.json";
// Stop strings a template file may name (OpenAI's four per request come on top,
// within kMaxStops).
inline constexpr int kMaxTemplateStops = 4;

struct ChatRole {
  std::string prefix;
  std::string suffix;
};

struct ChatTemplate {
  // Where it came from: kChatTemplateFile, or "plain".
  std::string source;
  ChatRole system, user, assistant;
  std::optional<ChatRole> tool;  // none: tool messages are refused
  std::string generation_prompt;
  std::vector<std::string> stop;

  // Whether a message of `role` (as ChatMessage names them) can be rendered.
  bool Supports(std::string_view role) const;
};

// The plain template: one line per message, "System: ", "User: ",
// "Assistant: " or "Tool: " and its content, each ending in "\n", then
// "Assistant:" for the answer, which stops at kChatStop (where the model
// would begin the user's next turn):
//
//   System: You answer from the documents.\nUser: What is QXRB?\nAssistant:
const ChatTemplate& PlainChatTemplate();
inline constexpr std::string_view kChatStop = "\nUser:";

// A chat_template.json's text. InvalidArgument, starting "chat_template.json
// in the model folder", for text that is not UTF-8 or JSON, an unknown key, a
// missing role, a value of the wrong type, or bad stop strings.
absl::StatusOr<ChatTemplate> ParseChatTemplate(std::string_view text);

// The template of a model folder, and a notice for the log when the folder
// has a template fotserve does not read (empty otherwise).
struct ModelChatTemplate {
  ChatTemplate chat_template;
  std::string notice;
};

// Reads `model_dir`/chat_template.json if there is one (ParseChatTemplate's
// errors, or the read's own with the file named as in the folder, never by
// its full path), else gives the plain template.
absl::StatusOr<ModelChatTemplate> LoadChatTemplate(const std::string& model_dir,
                                                   Env* env = Env::Default());

// The prompt of `messages`, every role of which the template Supports.
std::string RenderChat(const ChatTemplate& chat_template, const std::vector<ChatMessage>& messages);

}  // namespace fot::http

#endif  // FOTSERVE_SRC_HTTP_CHAT_TEMPLATE_H_
