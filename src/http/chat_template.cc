// Chat templates (see chat_template.h).
#include "src/http/chat_template.h"

#include <algorithm>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "base/utf8.h"
#include "nlohmann/json.hpp"
#include "src/server/generation.h"

namespace fot::http {
namespace {

using nlohmann::json;

// What a Hugging Face folder holds its Jinja template in.
constexpr char kTokenizerConfigFile[] = "tokenizer_config.json";

// InvalidArgument about the template file, as the operator knows it.
absl::Status FileError(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(kChatTemplateFile, " in the model folder", what,
                   " (README \"The HTTP API\" describes the format)"));
}

absl::Status CheckKeys(const json& object, absl::string_view where,
                       std::initializer_list<absl::string_view> known) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return FileError(absl::StrCat(" has an unknown key '", key, "'", where,
                                    " (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadString(const json& object, const char* key, absl::string_view name,
                        std::string* out) {
  auto it = object.find(key);
  if (it == object.end()) return absl::OkStatus();
  if (!it->is_string()) return FileError(absl::StrCat(": '", name, "' must be a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// The role `name`: an object with optional "prefix" and "suffix" strings.
absl::StatusOr<std::optional<ChatRole>> ReadRole(const json& root, const char* name,
                                                 bool required) {
  auto it = root.find(name);
  if (it == root.end()) {
    if (!required) return std::nullopt;
    return FileError(
        absl::StrCat(" needs the role '", name, "': {\"prefix\": \"...\", \"suffix\": \"...\"}"));
  }
  if (!it->is_object()) {
    return FileError(absl::StrCat(": '", name, "' must be an object with 'prefix' and 'suffix'"));
  }
  FOT_RETURN_IF_ERROR(CheckKeys(*it, absl::StrCat(" in '", name, "'"), {"prefix", "suffix"}));
  ChatRole role;
  FOT_RETURN_IF_ERROR(ReadString(*it, "prefix", absl::StrCat(name, ".prefix"), &role.prefix));
  FOT_RETURN_IF_ERROR(ReadString(*it, "suffix", absl::StrCat(name, ".suffix"), &role.suffix));
  return role;
}

absl::StatusOr<std::vector<std::string>> ReadStops(const json& root) {
  std::vector<std::string> stops;
  auto it = root.find("stop");
  if (it == root.end()) return stops;
  if (!it->is_array() || it->size() > static_cast<size_t>(kMaxTemplateStops)) {
    return FileError(
        absl::StrCat(": 'stop' must be a list of at most ", kMaxTemplateStops, " strings"));
  }
  for (const json& s : *it) {
    if (!s.is_string() || s.get<std::string>().empty() ||
        s.get<std::string>().size() > kMaxStopBytes) {
      return FileError(
          absl::StrCat(": each 'stop' string must have 1 to ", kMaxStopBytes, " bytes"));
    }
    stops.push_back(s.get<std::string>());
  }
  return stops;
}

absl::StatusOr<json> ParseJson(std::string_view text) {
  if (absl::Status utf8 = ValidateUtf8(text, /*allow_incomplete_end=*/false); !utf8.ok()) {
    return FileError(absl::StrCat(" is not UTF-8 text (", utf8.message(), ")"));
  }
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // what() starts "[json.exception.parse_error.101] ", which says nothing here.
    std::string what = e.what();
    if (const size_t end = what.find("] "); end != std::string::npos) what.erase(0, end + 2);
    return FileError(absl::StrCat(" is not valid JSON: ", what));
  }
}

// Whether `model_dir` holds a tokenizer_config.json with a chat_template.
bool HasJinjaTemplate(const std::string& model_dir, Env* env) {
  const std::string path = absl::StrCat(model_dir, "/", kTokenizerConfigFile);
  if (!env->Exists(path)) return false;
  absl::StatusOr<std::string> text = env->ReadFile(path);
  if (!text.ok()) return false;
  const json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.contains("chat_template") &&
         !config["chat_template"].is_null();
}

const ChatRole* RoleOf(const ChatTemplate& t, std::string_view role) {
  if (role == "user") return &t.user;
  if (role == "assistant") return &t.assistant;
  if (role == "system" || role == "developer") return &t.system;
  if (role == "tool" && t.tool.has_value()) return &*t.tool;
  return nullptr;
}

}  // namespace

bool ChatTemplate::Supports(std::string_view role) const { return RoleOf(*this, role) != nullptr; }

const ChatTemplate& PlainChatTemplate() {
  static const ChatTemplate* const plain = new ChatTemplate{
      .source = "plain",
      .system = {"System: ", "\n"},
      .user = {"User: ", "\n"},
      .assistant = {"Assistant: ", "\n"},
      .tool = ChatRole{"Tool: ", "\n"},
      .generation_prompt = "Assistant:",
      .stop = {std::string(kChatStop)},
  };
  return *plain;
}

absl::StatusOr<ChatTemplate> ParseChatTemplate(std::string_view text) {
  FOT_ASSIGN_OR_RETURN(const json root, ParseJson(text));
  if (!root.is_object()) return FileError(" must hold a JSON object");
  FOT_RETURN_IF_ERROR(
      CheckKeys(root, "", {"system", "user", "assistant", "tool", "generation_prompt", "stop"}));
  ChatTemplate out;
  out.source = std::string(kChatTemplateFile);
  for (auto [name, role] : {std::pair{"system", &out.system}, std::pair{"user", &out.user},
                            std::pair{"assistant", &out.assistant}}) {
    FOT_ASSIGN_OR_RETURN(std::optional<ChatRole> read, ReadRole(root, name, /*required=*/true));
    *role = *std::move(read);
  }
  FOT_ASSIGN_OR_RETURN(out.tool, ReadRole(root, "tool", /*required=*/false));
  FOT_RETURN_IF_ERROR(
      ReadString(root, "generation_prompt", "generation_prompt", &out.generation_prompt));
  FOT_ASSIGN_OR_RETURN(out.stop, ReadStops(root));
  return out;
}

absl::StatusOr<ModelChatTemplate> LoadChatTemplate(const std::string& model_dir, Env* env) {
  const std::string path = absl::StrCat(model_dir, "/", kChatTemplateFile);
  if (!env->Exists(path)) {
    ModelChatTemplate plain{PlainChatTemplate(), ""};
    if (HasJinjaTemplate(model_dir, env)) {
      plain.notice = absl::StrCat(
          "the model's ", kTokenizerConfigFile, " has a Jinja chat_template, which fotserve does ",
          "not render: chats use the plain template (fotserve reads ", kChatTemplateFile,
          " from the model folder; README \"The HTTP API\")");
    }
    return plain;
  }
  absl::StatusOr<std::string> text = env->ReadFile(path);
  if (!text.ok()) {
    // The message names the path; the operator knows the folder.
    return absl::Status(
        text.status().code(),
        absl::StrReplaceAll(text.status().message(),
                            {{path, absl::StrCat(kChatTemplateFile, " in the model folder")}}));
  }
  FOT_ASSIGN_OR_RETURN(ChatTemplate parsed, ParseChatTemplate(*text));
  return ModelChatTemplate{std::move(parsed), ""};
}

std::string RenderChat(const ChatTemplate& chat_template,
                       const std::vector<ChatMessage>& messages) {
  std::string prompt;
  for (const ChatMessage& m : messages) {
    const ChatRole* role = RoleOf(chat_template, m.role);
    if (role == nullptr) continue;  // the caller checked Supports
    absl::StrAppend(&prompt, role->prefix, m.content, role->suffix);
  }
  prompt += chat_template.generation_prompt;
  return prompt;
}

}  // namespace fot::http
