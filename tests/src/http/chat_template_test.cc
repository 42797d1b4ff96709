// Chat templates (src/http/chat_template.h): a model folder's
// chat_template.json rendered to the exact prompt, the plain fallback (also for
// a Hugging Face folder's Jinja template, with a notice), malformed files
// refused naming the file as it lies in the folder, and chat requests taking
// the template's stops and refusing roles it lacks.
#include "src/http/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "src/http/openai_api.h"

namespace fot::http {
namespace {

using nlohmann::json;

constexpr char kZephyrLike[] = R"({
  "system": {"prefix": "<|system|>\n", "suffix": "</s>\n"},
  "user": {"prefix": "<|user|>\n", "suffix": "</s>\n"},
  "assistant": {"prefix": "<|assistant|>\n", "suffix": "</s>\n"},
  "generation_prompt": "<|assistant|>\n",
  "stop": ["</s>", "<|user|>"]
})";

// A fresh model folder under the test's temporary directory holding `files`
// (name, text).
std::string ModelDir(const std::string& name,
                     const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string dir = ::testing::TempDir() + "/chat_template_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const auto& [file, text] : files) std::ofstream(dir + "/" + file) << text;
  return dir;
}

TEST(ChatTemplateTest, FileTemplateRendersPrefixContentSuffixPerMessageThenTheGenerationPrompt) {
  auto t = ParseChatTemplate(kZephyrLike);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->source, "chat_template.json");
  EXPECT_EQ(RenderChat(*t, {{"system", "Answer from memory."},
                            {"developer", "Be brief."},
                            {"user", "What is QXRB?"},
                            {"assistant", "7301"},
                            {"user", "And MNTV?"}}),
            "<|system|>\nAnswer from memory.</s>\n"
            "<|system|>\nBe brief.</s>\n"
            "<|user|>\nWhat is QXRB?</s>\n"
            "<|assistant|>\n7301</s>\n"
            "<|user|>\nAnd MNTV?</s>\n"
            "<|assistant|>\n");
  EXPECT_EQ(t->stop, (std::vector<std::string>{"</s>", "<|user|>"}));
  EXPECT_FALSE(t->Supports("tool"));
}

TEST(ChatTemplateTest, PrefixSuffixAndGenerationPromptDefaultToEmpty) {
  auto t = ParseChatTemplate(
      R"({"system": {}, "user": {"prefix": "?"}, "assistant": {"suffix": ";"},
          "tool": {"prefix": "#"}})");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->Supports("tool"));
  EXPECT_EQ(RenderChat(*t, {{"system", "s"}, {"user", "A"}, {"assistant", "1"}, {"tool", "t"}}),
            "s?A1;#t");
  EXPECT_TRUE(t->stop.empty());
}

TEST(ChatTemplateTest, PlainTemplateIsOneLinePerMessageThenAssistant) {
  const ChatTemplate& plain = PlainChatTemplate();
  EXPECT_EQ(plain.source, "plain");
  EXPECT_EQ(RenderChat(plain, {{"system", "Be brief."}, {"user", "Hi"}, {"tool", "ok"}}),
            "System: Be brief.\nUser: Hi\nTool: ok\nAssistant:");
  EXPECT_EQ(plain.stop, std::vector<std::string>{std::string(kChatStop)});
}

TEST(ChatTemplateTest, FolderWithoutATemplateFileGetsThePlainOneWithoutNotice) {
  auto loaded = LoadChatTemplate(ModelDir("none", {{"config.json", "{}"}}));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->chat_template.source, "plain");
  EXPECT_EQ(loaded->notice, "");
}

TEST(ChatTemplateTest, FolderWithATemplateFileGetsIt) {
  auto loaded = LoadChatTemplate(ModelDir("file", {{"chat_template.json", kZephyrLike}}));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->chat_template.source, "chat_template.json");
  EXPECT_EQ(loaded->chat_template.generation_prompt, "<|assistant|>\n");
}

TEST(ChatTemplateTest, JinjaTemplateOfATokenizerConfigIsNotRenderedAndSaysWhatIsRead) {
  auto loaded = LoadChatTemplate(ModelDir(
      "jinja", {{"tokenizer_config.json",
                 R"({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})"}}));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->chat_template.source, "plain");
  EXPECT_NE(loaded->notice.find("tokenizer_config.json has a Jinja chat_template"),
            std::string::npos)
      << loaded->notice;
  EXPECT_NE(loaded->notice.find("reads chat_template.json"), std::string::npos) << loaded->notice;

  // A tokenizer_config.json without one says nothing.
  auto quiet = LoadChatTemplate(ModelDir("config", {{"tokenizer_config.json", "{}"}}));
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_EQ(quiet->notice, "");
}

TEST(ChatTemplateTest, BadFilesAreRefusedNamingTheFileAndWhatIsWrong) {
  const std::string roles = R"("system": {}, "user": {}, "assistant": {})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"system\": {\"prefix\": \"\xff\"}}", "is not UTF-8 text (invalid UTF-8 at byte 23)"},
      {"{\"system\": ", "is not valid JSON: "},
      {"[]", "must hold a JSON object"},
      {"{" + roles + R"(, "bos": "<s>"})", "has an unknown key 'bos' (known: system, user,"},
      {R"({"system": {}, "user": {}})", "needs the role 'assistant'"},
      {R"({"system": {}, "user": {"prefix": 1}, "assistant": {}})",
       ": 'user.prefix' must be a string"},
      {R"({"system": {}, "user": {"prefix": "", "end": ""}, "assistant": {}})",
       "has an unknown key 'end' in 'user' (known: prefix, suffix)"},
      {R"({"system": "System: ", "user": {}, "assistant": {}})",
       ": 'system' must be an object with 'prefix' and 'suffix'"},
      {"{" + roles + R"(, "generation_prompt": ["<|assistant|>"]})",
       ": 'generation_prompt' must be a string"},
      {"{" + roles + R"(, "stop": "</s>"})", ": 'stop' must be a list of at most 4 strings"},
      {"{" + roles + R"(, "stop": ["a", "b", "c", "d", "e"]})", "a list of at most 4 strings"},
      {"{" + roles + R"(, "stop": [""]})", ": each 'stop' string must have 1 to 256 bytes"},
      {"{" + roles + R"(, "stop": [7]})", ": each 'stop' string must have 1 to 256 bytes"},
  };
  for (const auto& [text, expected] : cases) {
    auto t = ParseChatTemplate(text);
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << text;
    const std::string message(t.status().message());
    EXPECT_EQ(message.rfind("chat_template.json in the model folder", 0), 0u) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << text << "\n" << message;
  }
}

TEST(ChatTemplateTest, ErrorsOfAFolderNameTheFileNotItsPath) {
  const std::string dir = ModelDir("bad", {{"chat_template.json", "{\"user\": 3}"}});
  auto bad = LoadChatTemplate(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find(dir), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("chat_template.json in the model folder"),
            std::string::npos);

  // A file that cannot be read (here a folder of that name).
  const std::string unreadable = ModelDir("unreadable", {});
  std::filesystem::create_directories(unreadable + "/chat_template.json");
  auto failed = LoadChatTemplate(unreadable);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().message().find(unreadable), std::string::npos) << failed.status();
  EXPECT_NE(failed.status().message().find("chat_template.json in the model folder"),
            std::string::npos)
      << failed.status();
}

TEST(ChatTemplateTest, ChatRequestUsesTheTemplateAndAddsItsStopsOnce) {
  auto t = ParseChatTemplate(kZephyrLike);
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = ParseChatRequest(json::parse(R"({"model": "m", "stop": ["</s>", "END"],
      "messages": [{"role": "user", "content": "Hi"}]})"),
                            *t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->prompt, "<|user|>\nHi</s>\n<|assistant|>\n");
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"</s>", "END", "<|user|>"}));
}

TEST(ChatTemplateTest, ChatRequestWithARoleTheTemplateLacksIsRefusedNamingIt) {
  auto t = ParseChatTemplate(kZephyrLike);
  ASSERT_TRUE(t.ok()) << t.status();
  auto r = ParseChatRequest(json::parse(R"({"model": "m", "messages": [
      {"role": "user", "content": "Hi"}, {"role": "tool", "content": "ok"}]})"),
                            *t);
  ASSERT_FALSE(r.ok());
  const ApiError error = ErrorOf(r.status());
  EXPECT_EQ(error.http_status, 400);
  EXPECT_EQ(error.param, "messages[1].role");
  EXPECT_EQ(error.message, "the model's chat template (chat_template.json) has no 'tool' role");
}

}  // namespace
}  // namespace fot::http
