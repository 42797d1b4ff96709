// fotctl end to end, through its binary, against a real fot-server on a
// loopback port with a small random model: sessions, ingest (file, stdin,
// resumption), ask (streamed, traced, --json), score, every memory command,
// and the error paths (one line on stderr, exit code 2 for usage errors and 1
// for failures, invalid UTF-8 arguments included).
//
// ctest runs each test in its own process, so each process makes its own
// model and server (a fraction of a second for this model size).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {
namespace {

using nlohmann::json;

struct Result {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

// Runs `command` in a shell; stdout through the pipe, stderr through a file.
Result Shell(const std::string& command) {
  const std::string err_path = ::testing::TempDir() + "/fotctl_stderr.txt";
  FILE* pipe = popen((command + " 2>" + Quote(err_path)).c_str(), "r");
  if (pipe == nullptr) return {-1, "", "popen failed"};
  std::string out;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out, ReadFile(err_path)};
}

std::string Fotctl() { return std::string(FOT_BINARY_DIR) + "/fotctl"; }

// Sentences whose words the tokenizer learns; long enough for many windows.
std::string Story(int sentences, int seed) {
  const std::vector<std::string> nouns = {"river", "stone", "house", "cloud",  "field",
                                          "lamp",  "book",  "apple", "window", "garden"};
  const std::vector<std::string> adjs = {"green", "blue", "quiet", "warm", "old", "bright"};
  std::string text;
  for (int i = 0; i < sentences; ++i) {
    const int k = i * 7 + seed * 13;
    text += "The " + nouns[k % nouns.size()] + " is " + adjs[k % adjs.size()] + " and the " +
            nouns[(k / 3) % nouns.size()] + " keeps " + std::to_string(k % 97) + " secrets.\n";
  }
  return text;
}

bool OneErrorLine(const std::string& err) {
  return err.rfind("fotctl: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

// A port nothing listens on (bound, then released).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

class FotctlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ::testing::TempDir() + "/fotctl_model";
    WriteFile(::testing::TempDir() + "/corpus.txt", Story(400, 1) + Story(200, 5));
    ModelConfig config;
    config.model_type = "longllama";
    config.vocab_size = 320;
    config.hidden_size = 64;
    config.intermediate_size = 128;
    config.num_hidden_layers = 3;
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.max_position_embeddings = 32;
    config.last_context_length = 16;
    config.mem_layers = {1, 2};
    RandomCheckpointOptions options;
    options.seed = 7;
    options.init_std = 0.1f;
    ASSERT_TRUE(WriteRandomCheckpoint(dir, config, options).ok());
    ASSERT_TRUE(TrainTokenizer(::testing::TempDir() + "/corpus.txt", config.vocab_size,
                               dir + "/tokenizer.model")
                    .ok());

    model_dir_ = dir;
    StartServer("127.0.0.1:0");
    ASSERT_FALSE(address_.empty()) << "fot-server did not start: " << ReadFile(log_);
  }

  // Starts fot-server on `listen` with the suite's model and data directory;
  // sets address_ once it listens (empty if it did not start).
  static void StartServer(const std::string& listen) {
    const std::string data_dir = ::testing::TempDir() + "/fotctl_data";
    log_ = ::testing::TempDir() + "/fot_server_" + std::to_string(++starts_) + ".log";
    address_.clear();
    server_pid_ = fork();
    if (server_pid_ == 0) {
      freopen(log_.c_str(), "w", stderr);
      const std::string server = std::string(FOT_BINARY_DIR) + "/fot-server";
      execl(server.c_str(), server.c_str(), "--model", model_dir_.c_str(), "--data-dir",
            data_dir.c_str(), "--listen", listen.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // The server prints "serving MODEL on 127.0.0.1:PORT" once it listens.
    const std::regex serving("on 127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 300 && address_.empty(); ++i) {
      std::smatch match;
      const std::string text = ReadFile(log_);
      if (std::regex_search(text, match, serving)) address_ = "127.0.0.1:" + match[1].str();
      if (waitpid(server_pid_, nullptr, WNOHANG) != 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  static void KillServer() {
    if (server_pid_ > 0) {
      kill(server_pid_, SIGKILL);
      waitpid(server_pid_, nullptr, 0);
      server_pid_ = -1;
    }
  }

  static void TearDownTestSuite() { KillServer(); }

  // fotctl --server ADDRESS args..., with `stdin_file` as its stdin if given.
  static Result Run(const std::vector<std::string>& args, const std::string& stdin_file = "") {
    std::string command = Quote(Fotctl()) + " --server " + address_;
    for (const std::string& a : args) command.append(" ").append(Quote(a));
    if (!stdin_file.empty()) command += " < " + Quote(stdin_file);
    return Shell(command);
  }

  static json RunJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  }

  // Writes `text` to a file named `name` in the temp dir; returns its path.
  static std::string TextFile(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/" + name;
    WriteFile(path, text);
    return path;
  }

  // A session holding story.txt (several windows, so memory has entries).
  static void MakeSessionWithStory(const std::string& session) {
    ASSERT_EQ(Run({"sessions", "create", session}).exit_code, 0);
    const Result r = Run({"ingest", session, TextFile("story.txt", Story(40, 2))});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  static pid_t server_pid_;
  static std::string address_;
  static std::string model_dir_;
  static std::string log_;
  static int starts_;
};

pid_t FotctlTest::server_pid_ = -1;
std::string FotctlTest::address_;
std::string FotctlTest::model_dir_;
std::string FotctlTest::log_;
int FotctlTest::starts_ = 0;

TEST_F(FotctlTest, SessionsCreateListShowRemove) {
  Result r = Run(
      {"sessions", "create", "s1", "--retrieval", "knn:4", "--index", "flat", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("created session 's1'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("knn:4"), std::string::npos) << r.out;

  r = Run({"sessions", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("s1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("session"), std::string::npos) << r.out;  // the table header

  json ls = RunJson({"sessions", "ls"});
  ASSERT_TRUE(ls.is_object()) << ls;
  ASSERT_EQ(ls["sessions"].size(), 1u);
  EXPECT_EQ(ls["sessions"][0]["name"], "s1");
  EXPECT_EQ(ls["sessions"][0]["options"]["retrieval"], "knn:4");

  json show = RunJson({"sessions", "show", "s1"});
  EXPECT_EQ(show["stream_tokens"], 0);

  r = Run({"sessions", "create", "s1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;

  r = Run({"sessions", "rm", "s1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Run({"sessions", "rm", "s1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("s1"), std::string::npos) << r.err;
}

TEST_F(FotctlTest, SessionsCreateWithLambdaAttentionFlags) {
  Result r = Run({"sessions", "create", "lam", "--attention", "lambda", "--n-global", "2",
                  "--local-window", "8", "--memory-positioning", "fixed_distance",
                  "--memory-layers", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string summary = "lambda n_global=2 L=8 memory=fixed_distance layers=2";
  EXPECT_NE(r.out.find("attention " + summary), std::string::npos) << r.out;
  r = Run({"sessions", "ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("attention"), std::string::npos) << r.out;  // the column
  EXPECT_NE(r.out.find(summary), std::string::npos) << r.out;
  r = Run({"sessions", "show", "lam"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(summary), std::string::npos) << r.out;

  const json show = RunJson({"sessions", "show", "lam"});
  const json& options = show["options"];
  EXPECT_EQ(options["attention"], "lambda") << show;
  EXPECT_EQ(options["n_global"], 2);
  EXPECT_EQ(options["local_window"], 8);
  EXPECT_EQ(options["memory_positioning"], "fixed_distance");
  EXPECT_EQ(options["memory_layers"], "2");
  const json ls = RunJson({"sessions", "ls"});
  bool listed = false;
  for (const json& session : ls["sessions"]) {
    if (session["name"] != "lam") continue;
    listed = true;
    EXPECT_EQ(session["options"], options);
  }
  EXPECT_TRUE(listed) << ls;

  // Defaults filled in; 0 sinks is a value of its own; fot sessions have no
  // lambda options.
  const json zero =
      RunJson({"sessions", "create", "lam-zero", "--attention", "lambda", "--n-global", "0"});
  EXPECT_EQ(zero["options"]["n_global"], 0) << zero;
  EXPECT_EQ(zero["options"]["local_window"], 32) << zero;  // the model's W
  EXPECT_EQ(zero["options"]["memory_positioning"], "as_first") << zero;
  EXPECT_EQ(zero["options"]["memory_layers"], "1,2") << zero;
  const json plain = RunJson({"sessions", "create", "not-lam"});
  EXPECT_EQ(plain["options"]["attention"], "fot") << plain;
  EXPECT_TRUE(plain["options"]["n_global"].is_null()) << plain;

  // A lambda session ingests and answers like any other.
  r = Run({"ingest", "lam", TextFile("lambda_story.txt", Story(20, 3))});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json answer = RunJson({"ask", "lam", "The river is", "--max-tokens", "4", "--ignore-eos"});
  EXPECT_EQ(answer["generated_tokens"], 4) << answer;

  // The server names a bad option in one line, exit code 1.
  for (const auto& [args, field] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--n-global", "3"}, "n_global"},
           {{"--attention", "lambda", "--local-window", "999"}, "local_window"},
           {{"--attention", "lambda", "--n-global", "-1"}, "n_global"},
           {{"--attention", "lambda", "--memory-positioning", "far"}, "memory_positioning"},
           {{"--attention", "sideways"}, "attention"}}) {
    std::vector<std::string> command = {"sessions", "create", "lam-bad"};
    command.insert(command.end(), args.begin(), args.end());
    r = Run(command);
    EXPECT_EQ(r.exit_code, 1) << field << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find(field), std::string::npos) << r.err;
  }
}

TEST_F(FotctlTest, IngestsFilesAndStdinWithProgress) {
  ASSERT_EQ(Run({"sessions", "create", "docs"}).exit_code, 0);
  const std::string a = TextFile("a.txt", Story(30, 3));
  const std::string b = TextFile("b.txt", Story(10, 4));
  Result r = Run({"ingest", "docs", a, b});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Not a terminal: one final progress line per document.
  EXPECT_NE(r.err.find("a.txt ["), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;

  r = Run({"ingest", "docs", "-", "--doc-id", "piped"}, TextFile("c.txt", Story(5, 6)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("piped"), std::string::npos) << r.err;
  // Through a real pipe too (size unknown: no bar, bytes instead).
  r = Shell("cat " + Quote(b) + " | " + Quote(Fotctl()) + " --server " + address_ +
            " ingest docs - --doc-id=from-pipe");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("from-pipe  "), std::string::npos) << r.err;

  json show = RunJson({"sessions", "show", "docs"});
  ASSERT_EQ(show["documents"].size(), 4u) << show;
  EXPECT_EQ(show["documents"][0]["name"], "a.txt");
  EXPECT_EQ(show["documents"][1]["name"], "b.txt");
  EXPECT_EQ(show["documents"][2]["name"], "piped");
  for (const json& d : show["documents"]) {
    EXPECT_TRUE(d["complete"].get<bool>()) << d;
    EXPECT_GT(d["tokens"].get<int64_t>(), 0) << d;
  }
  // b.txt twice (file, then pipe): the same tokens.
  EXPECT_EQ(show["documents"][1]["tokens"], show["documents"][3]["tokens"]);

  // The same id again is refused, with a hint; --resume of a complete one is a no-op.
  r = Run({"ingest", "docs", a});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  r = Run({"ingest", "docs", a, "--resume"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("already complete"), std::string::npos) << r.err;

  json ingest = RunJson({"ingest", "docs", TextFile("d.txt", Story(3, 9))});
  ASSERT_EQ(ingest["documents"].size(), 1u) << ingest;
  EXPECT_EQ(ingest["documents"][0]["document"], "d.txt");
  EXPECT_GT(ingest["documents"][0]["tokens"].get<int64_t>(), 0);
}

// Text travels in string fields: fotctl cuts chunks between characters, so
// any --chunk-bytes gives the tokens of one chunk; a file that is not UTF-8
// is refused before it is sent.
TEST_F(FotctlTest, ChunksOfMultibyteTextEndBetweenCharacters) {
  ASSERT_EQ(Run({"sessions", "create", "utf8"}).exit_code, 0);
  const std::string text = "Café crème, naïve façade: ça coûte 5 €. 東京は大きい. Καλημέρα.";
  ASSERT_EQ(Run({"ingest", "utf8", TextFile("whole.txt", text)}).exit_code, 0);
  for (const std::string chunk : {"1", "2", "3", "5"}) {
    const Result r =
        Run({"ingest", "utf8", TextFile("cut" + chunk + ".txt", text), "--chunk-bytes", chunk});
    ASSERT_EQ(r.exit_code, 0) << chunk << ": " << r.err;
  }
  const json show = RunJson({"sessions", "show", "utf8"});
  ASSERT_EQ(show["documents"].size(), 5u) << show;
  const int64_t tokens = show["documents"][1]["tokens"].get<int64_t>();
  EXPECT_EQ(show["documents"][0]["tokens"].get<int64_t>(), tokens + 1);  // starts with BOS
  for (const json& d : show["documents"]) {
    EXPECT_TRUE(d["complete"].get<bool>()) << d;
    if (d["name"] != "whole.txt") EXPECT_EQ(d["tokens"].get<int64_t>(), tokens) << d;
  }
  const Result latin1 = Run({"ingest", "utf8", TextFile("latin1.txt", "caf\xe9 cr\xe8me")});
  EXPECT_EQ(latin1.exit_code, 1) << latin1.err;
  EXPECT_TRUE(OneErrorLine(latin1.err)) << latin1.err;
  EXPECT_NE(latin1.err.find("IngestRequest.chunk.text: invalid UTF-8"), std::string::npos)
      << latin1.err;
}

TEST_F(FotctlTest, ResumesAnOpenDocumentWhereTheServerHasIt) {
  // One session gets the story in two runs (the first leaves it open), another
  // in one: same tokens, same greedy answer (DESIGN.md §2).
  const std::string whole = Story(30, 8);
  const std::string path = TextFile("growing.txt", whole.substr(0, whole.size() / 2 + 3));
  ASSERT_EQ(Run({"sessions", "create", "two-runs"}).exit_code, 0);
  Result r = Run({"ingest", "two-runs", path, "--keep-open", "--chunk-bytes", "100"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json show = RunJson({"sessions", "show", "two-runs"});
  ASSERT_EQ(show["documents"].size(), 1u);
  EXPECT_FALSE(show["documents"][0]["complete"].get<bool>());
  EXPECT_LE(show["documents"][0]["resume_offset"].get<int64_t>(),
            static_cast<int64_t>(whole.size() / 2 + 3));

  WriteFile(path, whole);
  r = Run({"ingest", "two-runs", path, "--resume", "--chunk-bytes", "77"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  ASSERT_EQ(Run({"sessions", "create", "one-run"}).exit_code, 0);
  ASSERT_EQ(Run({"ingest", "one-run", path}).exit_code, 0);
  const json a = RunJson({"sessions", "show", "two-runs"});
  const json b = RunJson({"sessions", "show", "one-run"});
  EXPECT_TRUE(a["documents"][0]["complete"].get<bool>());
  EXPECT_EQ(a["documents"][0]["tokens"], b["documents"][0]["tokens"]);
  EXPECT_EQ(a["stream_tokens"], b["stream_tokens"]);

  json answer_a = RunJson({"ask", "two-runs", "The river is", "--max-tokens", "6", "--ignore-eos"});
  json answer_b = RunJson({"ask", "one-run", "The river is", "--max-tokens", "6", "--ignore-eos"});
  EXPECT_EQ(answer_a["tokens"], answer_b["tokens"]);
}

TEST_F(FotctlTest, RetriesABrokenIngestOnceFromTheLastAcknowledgedOffset) {
  // The server dies mid-ingest and comes back on the same port with the same
  // data directory; fotctl resumes the document where the server saved it.
  const std::string path = TextFile("long.txt", Story(800, 12));
  ASSERT_EQ(Run({"sessions", "create", "crash", "--retrieval", "knn:2"}).exit_code, 0);
  const std::string address = address_;
  const std::string err_path = ::testing::TempDir() + "/crash_stderr.txt";
  FILE* ingest = popen((Quote(Fotctl()) + " --json --server " + address + " ingest crash " +
                        Quote(path) + " --chunk-bytes 64 2>" + Quote(err_path))
                           .c_str(),
                       "r");
  ASSERT_NE(ingest, nullptr);
  int64_t tokens_at_kill = 0;
  for (int i = 0; i < 200 && tokens_at_kill == 0; ++i) {
    const json show = RunJson({"sessions", "show", "crash"});
    if (!show["documents"].empty()) tokens_at_kill = show["documents"][0]["tokens"].get<int64_t>();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  KillServer();
  StartServer(address.substr(0, address.rfind(':')) + address.substr(address.rfind(':')));
  ASSERT_EQ(address_, address) << ReadFile(log_);

  std::string out;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), ingest)) out.append(buffer.data(), n);
  const int status = pclose(ingest);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(err_path);
  const json result = json::parse(out, nullptr, false);
  ASSERT_EQ(result["documents"].size(), 1u) << out;
  EXPECT_TRUE(result["documents"][0]["retried"].get<bool>()) << out;
  EXPECT_GT(tokens_at_kill, 0);

  // Nothing lost, nothing doubled: the same as one unbroken ingest.
  ASSERT_EQ(Run({"sessions", "create", "unbroken", "--retrieval", "knn:2"}).exit_code, 0);
  ASSERT_EQ(Run({"ingest", "unbroken", path}).exit_code, 0);
  const json a = RunJson({"sessions", "show", "crash"});
  const json b = RunJson({"sessions", "show", "unbroken"});
  EXPECT_TRUE(a["documents"][0]["complete"].get<bool>()) << a;
  EXPECT_EQ(a["documents"][0]["tokens"], b["documents"][0]["tokens"]);
  EXPECT_EQ(a["stream_tokens"], b["stream_tokens"]);
}

TEST_F(FotctlTest, AskStreamsTheAnswerAndTracesItsMemory) {
  MakeSessionWithStory("qa");
  Result r = Run({"ask", "qa", "The garden is", "--max-tokens", "8", "--ignore-eos",
                  "--temperature", "0.8", "--top-p", "0.9", "--seed", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(r.out.size(), 1u);
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(r.err, "");

  json answer = RunJson({"ask", "qa", "The garden is", "--max-tokens", "8", "--ignore-eos"});
  ASSERT_TRUE(answer.is_object());
  EXPECT_EQ(answer["generated_tokens"], 8);
  EXPECT_EQ(answer["finish_reason"], "length");
  ASSERT_EQ(answer["tokens"].size(), 8u);
  std::string joined;
  for (const json& t : answer["tokens"]) {
    joined += t["text"].get<std::string>();
    EXPECT_FALSE(t["piece"].get<std::string>().empty()) << t;  // the vocabulary piece
  }
  // The final message adds only what was held back.
  EXPECT_EQ(answer["text"].get<std::string>().rfind(joined, 0), 0u) << answer;

  r = Run({"ask", "qa", "The garden is", "--max-tokens", "3", "--ignore-eos", "--trace"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("trace:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("story.txt"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("%"), std::string::npos) << r.out;

  json traced = RunJson({"ask", "qa", "The garden is", "--max-tokens", "2", "--ignore-eos",
                         "--trace", "--retrieval", "knn:4", "--docs", "story.txt"});
  ASSERT_EQ(traced["tokens"].size(), 2u);
  ASSERT_FALSE(traced["tokens"][0]["trace"].empty()) << traced;
  const json& entry = traced["tokens"][0]["trace"][0]["heads"][0]["entries"][0];
  EXPECT_EQ(entry["entry"]["document"], "story.txt") << entry;
  EXPECT_GT(entry["attention_share"].get<double>(), 0);

  // A stop string ends the answer before it.
  json stopped =
      RunJson({"ask", "qa", "The garden is", "--max-tokens", "40", "--ignore-eos", "--stop", "e"});
  EXPECT_EQ(stopped["text"].get<std::string>().find('e'), std::string::npos) << stopped;
}

TEST_F(FotctlTest, ScoresAContinuation) {
  MakeSessionWithStory("scored");
  Result r = Run({"score", "scored", "--context", "The lamp is", "--continuation", " warm and"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("perplexity"), std::string::npos) << r.out;
  // Per token: its piece, its text, log p and p; the least likely marked.
  EXPECT_NE(r.out.find("piece"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("▁and"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("<- least likely"), std::string::npos) << r.out;
  json score =
      RunJson({"score", "scored", "--context", "The lamp is", "--continuation", " warm and"});
  ASSERT_GT(score["tokens"].get<int>(), 0) << score;
  EXPECT_EQ(score["token_log_probs"].size(), score["tokens"].get<size_t>());
  EXPECT_LT(score["log_likelihood"].get<double>(), 0);
  EXPECT_GT(score["perplexity"].get<double>(), 1);
  ASSERT_EQ(score["token_scores"].size(), score["tokens"].get<size_t>()) << score;
  std::string text;
  for (size_t i = 0; i < score["token_scores"].size(); ++i) {
    const json& t = score["token_scores"][i];
    EXPECT_EQ(t["token_id"], score["continuation_token_ids"][i]) << t;
    EXPECT_EQ(t["log_prob"], score["token_log_probs"][i]) << t;
    EXPECT_FALSE(t["piece"].get<std::string>().empty()) << t;
    text += t["text"].get<std::string>();
  }
  EXPECT_EQ(text, " warm and") << score;  // the decoded continuation

  r = Run({"score", "scored", "--context", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
}

TEST_F(FotctlTest, MemoryCommands) {
  MakeSessionWithStory("mem");
  ASSERT_EQ(Run({"ingest", "mem", TextFile("extra.txt", Story(20, 11))}).exit_code, 0);

  Result r = Run({"memory", "stats", "mem"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kv head"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("story.txt"), std::string::npos) << r.out;
  json stats = RunJson({"memory", "stats", "mem"});
  ASSERT_EQ(stats["layers"].size(), 2u) << stats;
  const int64_t entries = stats["layers"][0]["heads"][0]["entries"];
  EXPECT_GT(entries, 10);

  json page = RunJson({"memory", "ls", "mem", "--offset", "3", "--limit", "5"});
  ASSERT_EQ(page["entries"].size(), 5u) << page;
  EXPECT_EQ(page["entries"][0]["id"], 3);
  EXPECT_EQ(page["total_entries"], entries);
  EXPECT_TRUE(page["has_more"].get<bool>()) << page;
  EXPECT_EQ(page["next_offset"], 8) << page;
  json deep = RunJson({"memory", "ls", "mem", "--offset", std::to_string(entries - 2), "--limit",
                       "10", "--layer", "2"});
  EXPECT_EQ(deep["entries"].size(), 2u) << deep;
  EXPECT_EQ(deep["entries"][0]["id"], entries - 2) << deep;
  EXPECT_FALSE(deep["has_more"].get<bool>()) << deep;
  EXPECT_TRUE(deep["next_offset"].is_null()) << deep;
  // More than one server page (at most 10000 entries each), from an offset.
  json all = RunJson({"memory", "ls", "mem", "--offset", "1", "--limit", "100000"});
  ASSERT_EQ(all["entries"].size(), static_cast<size_t>(entries - 1)) << all["total_entries"];
  EXPECT_EQ(all["entries"].back()["id"], entries - 1);
  r = Run({"memory", "ls", "mem", "--limit", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("entries 0-3 of"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("more: fotctl memory ls mem --offset 4 --limit 4"), std::string::npos)
      << r.out;
  r = Run({"memory", "ls", "mem", "--offset", std::to_string(entries)});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("no entries at offset"), std::string::npos) << r.out;

  r = Run({"memory", "show", "mem", "5", "--radius", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("entry 5: document 'story.txt'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("["), std::string::npos) << r.out;
  json shown = RunJson({"memory", "show", "mem", "5"});
  EXPECT_EQ(shown["entry"]["id"], 5);

  r = Run({"memory", "search", "mem", "The house keeps", "--top", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(".txt"), std::string::npos) << r.out;
  json found = RunJson({"memory", "search", "mem", "The house keeps"});
  ASSERT_EQ(found["layers"].size(), 2u) << found;

  // Delete a document: its entries leave retrieval.
  ASSERT_EQ(Run({"memory", "rm", "mem", "extra.txt"}).exit_code, 0);
  stats = RunJson({"memory", "stats", "mem"});
  EXPECT_EQ(stats["documents"], json({"story.txt"})) << stats;

  // Save, remove, load back.
  r = Run({"memory", "save", "mem", "mem-snap"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("snapshot 'mem-snap'"), std::string::npos) << r.out;
  EXPECT_EQ(Run({"memory", "save", "mem", "mem-snap"}).exit_code, 1);
  EXPECT_EQ(Run({"memory", "save", "mem", "mem-snap", "--overwrite"}).exit_code, 0);
  const json before = RunJson({"sessions", "show", "mem"});
  ASSERT_EQ(Run({"sessions", "rm", "mem"}).exit_code, 0);
  EXPECT_NE(Run({"sessions", "ls"}).out.find("mem-snap"), std::string::npos);
  r = Run({"memory", "load", "restored", "mem-snap"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json after = RunJson({"sessions", "show", "restored"});
  EXPECT_EQ(after["stream_tokens"], before["stream_tokens"]);
  EXPECT_EQ(after["documents"].size(), before["documents"].size());
}

TEST_F(FotctlTest, ServerErrorsAreOneLineAndExitCodeOne) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"ask", "nope", "hi"},
                                             {"memory", "stats", "nope"},
                                             {"memory", "ls", "nope"},
                                             {"sessions", "show", "nope"},
                                             {"score", "nope", "--continuation", "x"},
                                             {"ingest", "nope", TextFile("x.txt", "some text")}}) {
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1];
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find("'nope'"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  ASSERT_EQ(Run({"sessions", "create", "errs"}).exit_code, 0);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"sessions", "create", "bad", "--retrieval", "knn:zero"},
           {"sessions", "create", "bad/name"},
           {"ingest", "errs", TextFile("empty.txt", "")},
           {"ingest", "errs", ::testing::TempDir() + "/no-such-file.txt"},
           {"memory", "rm", "errs", "no-such-doc"},
           {"memory", "load", "x", "no-such-snapshot"}}) {
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << " " << args[2] << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
  }
}

TEST_F(FotctlTest, InvalidUtf8IsOneLineNamingTheField) {
  MakeSessionWithStory("latin1");
  // Arguments in Latin-1 (not UTF-8): fotctl names the field before sending,
  // exit code 1 (the server's parser would refuse the string field).
  for (const auto& [args, field] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"ask", "latin1", "caf\xe9?"}, "GenerateRequest.question"},
           {{"ask", "latin1", "The river", "--stop", "\xe9"}, "GenerateRequest.stop[0]"},
           {{"score", "latin1", "--continuation", "cr\xe8me"}, "ScoreRequest.continuation"},
           {{"memory", "search", "latin1", "na\xefve"}, "SearchMemoryRequest.text"},
           {{"sessions", "show", "caf\xe9"}, "GetSessionRequest.session"},
           {{"ingest", "latin1", TextFile("caf\xe9.txt", "a document named in Latin-1")},
            "IngestRequest.open.document"}}) {
    const Result r = Run(args);
    EXPECT_EQ(r.exit_code, 1) << field << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find(field + ": invalid UTF-8"), std::string::npos) << r.err;
  }
}

TEST_F(FotctlTest, UsageErrorsAreOneLineAndExitCodeTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"frobnicate"},
                                             {"sessions"},
                                             {"sessions", "explode"},
                                             {"sessions", "create"},
                                             {"sessions", "ls", "extra"},
                                             {"sessions", "ls", "--no-such-flag"},
                                             {"sessions", "ls", "--max-tokens", "3"},
                                             {"ask", "s", "q", "--max-tokens", "many"},
                                             {"ask", "s", "q", "--max-tokens"},
                                             {"ask", "s", "q", "--top-p", "2"},
                                             {"ask", "s", ""},
                                             {"ingest", "s", "-"},
                                             {"ingest", "s", "a", "b", "--doc-id", "x"},
                                             {"memory", "show", "s", "first"},
                                             {"memory", "ls", "s", "--limit", "0"}}) {
    const Result r = Run(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.exit_code, 2) << joined << ": " << r.err;
    EXPECT_TRUE(OneErrorLine(r.err)) << joined << ": " << r.err;
  }
  const Result help = Run({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("memory search"), std::string::npos);
}

TEST_F(FotctlTest, ServerDownIsOneLineAndExitCodeOne) {
  const std::string down = "127.0.0.1:" + std::to_string(ClosedPort());
  for (const char* command : {"sessions ls", "ask s hello", "memory stats s", "--json info"}) {
    const Result r = Shell(Quote(Fotctl()) + " --server " + down + " " + std::string(command));
    EXPECT_EQ(r.exit_code, 1) << command;
    EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
    EXPECT_NE(r.err.find("cannot reach fot-server at " + down), std::string::npos) << r.err;
  }
  const Result r = Shell(Quote(Fotctl()) + " --server " + down + " ingest s " +
                         Quote(TextFile("y.txt", "text")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(OneErrorLine(r.err)) << r.err;
}

}  // namespace
}  // namespace fot
