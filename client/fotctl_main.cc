// fotctl, the command-line client of fot-server. See kUsage below (and
// README.md) for the commands; errors print one line, "fotctl: ...", and exit
// with 2 for a mistake in the command line, 1 for anything else.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/env.h"
#include "base/status_macros.h"
#include "client/cli.h"
#include "client/commands.h"

// Every command.
ABSL_FLAG(std::string, server, "",
          "fot-server address host:port (default: $FOTCTL_SERVER, else 127.0.0.1:50051)");
ABSL_FLAG(bool, json, false, "print one JSON document instead of tables");
ABSL_FLAG(double, wait, 0, "wait up to this many seconds for the server to accept connections");
ABSL_FLAG(std::string, api_key_file, "",
          "file holding the API key to send (default: $FOTSERVE_API_KEY, else none)");
ABSL_FLAG(bool, tls, false, "connect with TLS (implied by --tls-ca, --tls-cert, --tls-key)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificates the server's certificate must chain to (default: the system's)");
ABSL_FLAG(std::string, tls_cert, "", "mutual TLS: this client's PEM certificate (with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "mutual TLS: the PEM private key of --tls-cert");
// sessions create
ABSL_FLAG(std::string, index, "", "memory index: flat, hnsw or ivf, with optional :k=v,... params");
ABSL_FLAG(std::string, dtype, "", "memory dtype: f32, f16 or bf16");
ABSL_FLAG(int, last_context, 0, "L, the last window's length (0: the model's)");
ABSL_FLAG(std::string, attention, "", "attention: fot (default) or lambda (LM-Infinite's Λ shape)");
ABSL_FLAG(int, n_global, 4, "lambda: sink tokens, the stream's first N (0: none)");
ABSL_FLAG(int, local_window, 0, "lambda: L, the local branch and distance cap (0: the model's W)");
ABSL_FLAG(std::string, memory_positioning, "",
          "lambda: memory keys as_first, fixed_distance or none (default: the model's)");
ABSL_FLAG(std::string, memory_layers, "",
          "lambda: memory layers, e.g. 1,3, or none (default: the model's)");
// sessions create, ask, score, memory search
ABSL_FLAG(std::string, retrieval, "", "memory retrieval: dense, knn:K or knn:K:exact");
// ingest
ABSL_FLAG(std::string, doc_id, "", "document id (required for stdin; default: the file name)");
ABSL_FLAG(bool, resume, false, "continue documents from where the server has them");
ABSL_FLAG(bool, keep_open, false, "leave documents open, to append more later with --resume");
ABSL_FLAG(int64_t, chunk_bytes, 64 << 10, "bytes per streamed chunk");
ABSL_FLAG(bool, quiet, false, "no progress bar");
// ask
ABSL_FLAG(int, max_tokens, 0, "tokens to generate (0: the server's default, 64)");
ABSL_FLAG(float, temperature, 0, "sampling temperature; 0 is greedy");
ABSL_FLAG(float, top_p, 0, "nucleus sampling mass in (0, 1] (0: 1)");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(std::string, stop, "", "stop string (repeatable; \\n, \\t escapes)");
ABSL_FLAG(std::vector<std::string>, docs, {},
          "read only these documents' memory (comma-separated)");
ABSL_FLAG(bool, keep_turn, false, "append the question and answer to the session");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past the end-of-sequence token");
ABSL_FLAG(bool, trace, false, "show where each token's retrieved memory came from");
ABSL_FLAG(int, trace_top, 3, "memory entries shown per layer and token with --trace");
// score
ABSL_FLAG(std::string, context, "", "text after the session's stream, before the continuation");
ABSL_FLAG(std::string, continuation, "", "the text to score");
// memory
ABSL_FLAG(int, layer, -1, "memory layer (default: the first)");
ABSL_FLAG(int64_t, offset, 0, "first entry to list");
ABSL_FLAG(int64_t, limit, 20, "entries to list");
ABSL_FLAG(int, radius, 16, "token positions shown either side of an entry");
ABSL_FLAG(int, top, 5, "entries shown per memory layer");
ABSL_FLAG(bool, overwrite, false, "replace an existing snapshot");

namespace fot::client {
namespace {

constexpr char kUsage[] = R"(fotctl: the command-line client of fot-server

usage: fotctl [--server HOST:PORT] [--json] [--wait SECONDS] [--api-key-file FILE]
              [--tls [--tls-ca PEM] [--tls-cert PEM --tls-key PEM]] COMMAND ...

  info                                    the server's model and limits
  sessions create NAME [--retrieval dense|knn:K] [--index flat|hnsw|ivf[:k=v,...]]
                       [--dtype f32|f16|bf16] [--last-context L]
                       [--attention fot|lambda [--n-global N] [--local-window L]
                        [--memory-positioning as_first|fixed_distance|none]
                        [--memory-layers 1,3|none]]
  sessions ls                             sessions and saved snapshots
  sessions show NAME                      a session's options and documents
  sessions rm NAME
  ingest SESSION FILE...|- [--doc-id ID] [--resume] [--keep-open] [--quiet]
                                          stream documents in (id: the file name)
  ask SESSION QUESTION [--max-tokens N] [--temperature T] [--top-p P] [--seed S]
                       [--stop STR]... [--docs a,b] [--retrieval R] [--keep-turn]
                       [--ignore-eos] [--trace [--trace-top N]]
  score SESSION --continuation TEXT [--context TEXT] [--retrieval R]
  memory stats SESSION
  memory ls SESSION [--layer N] [--offset N] [--limit N]
  memory show SESSION ENTRY [--layer N] [--radius N]
  memory search SESSION TEXT [--top N] [--retrieval R]
  memory rm SESSION DOCUMENT              hide a document's entries from retrieval
  memory save SESSION [SNAPSHOT] [--overwrite]   snapshot in the server's data dir
  memory load SESSION [SNAPSHOT]          a new live session from a snapshot

Human-readable tables by default; --json prints one JSON document per command.
A server started with --api-keys needs a key: --api-key-file FILE, or the key in
$FOTSERVE_API_KEY. A TLS server needs --tls (--tls-ca CA.pem for a private CA;
--tls-cert and --tls-key where it asks for client certificates).
Errors print one line; exit code 2 for usage errors, 1 for failures (130: Ctrl-C).
)";

const std::set<std::string> kGlobalFlags = {"server", "json",   "wait",     "api_key_file",
                                            "tls",    "tls_ca", "tls_cert", "tls_key"};

struct Command {
  std::string name;  // "memory ls"
  int min_args;      // positional arguments after the name
  int max_args;      // -1: any number
  std::set<std::string> flags;
  std::string synopsis;
};

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"info", 0, 0, {}, "info"},
      {"sessions create",
       1,
       1,
       {"retrieval", "index", "dtype", "last_context", "attention", "n_global", "local_window",
        "memory_positioning", "memory_layers"},
       "sessions create NAME [--retrieval R] [--index I] [--dtype D] [--attention lambda ...]"},
      {"sessions ls", 0, 0, {}, "sessions ls"},
      {"sessions show", 1, 1, {}, "sessions show NAME"},
      {"sessions rm", 1, 1, {}, "sessions rm NAME"},
      {"ingest",
       2,
       -1,
       {"doc_id", "resume", "keep_open", "chunk_bytes", "quiet"},
       "ingest SESSION FILE...|- [--doc-id ID] [--resume]"},
      {"ask",
       2,
       2,
       {"max_tokens", "temperature", "top_p", "seed", "stop", "docs", "retrieval", "keep_turn",
        "ignore_eos", "trace", "trace_top"},
       "ask SESSION \"QUESTION\" [options]"},
      {"score",
       1,
       1,
       {"context", "continuation", "retrieval"},
       "score SESSION --continuation TEXT [--context TEXT]"},
      {"memory stats", 1, 1, {}, "memory stats SESSION"},
      {"memory ls", 1, 1, {"layer", "offset", "limit"}, "memory ls SESSION [--offset N --limit N]"},
      {"memory show", 2, 2, {"layer", "radius"}, "memory show SESSION ENTRY"},
      {"memory search", 2, 2, {"top", "retrieval"}, "memory search SESSION TEXT"},
      {"memory rm", 2, 2, {}, "memory rm SESSION DOCUMENT"},
      {"memory save", 1, 2, {"overwrite"}, "memory save SESSION [SNAPSHOT]"},
      {"memory load", 1, 2, {}, "memory load SESSION [SNAPSHOT]"},
  };
  return *commands;
}

// The command named by the first one or two positional arguments.
absl::StatusOr<const Command*> FindCommand(const std::vector<std::string>& positional) {
  if (positional.empty()) return UsageError("no command (fotctl --help lists them)");
  for (const Command& command : Commands()) {
    const std::vector<std::string> words = absl::StrSplit(command.name, ' ');
    if (positional.size() >= words.size() &&
        std::equal(words.begin(), words.end(), positional.begin())) {
      return &command;
    }
  }
  const std::string& group = positional[0];
  if (group == "sessions" || group == "memory") {
    std::vector<std::string> verbs;
    for (const Command& command : Commands()) {
      if (command.name.rfind(group + " ", 0) == 0)
        verbs.push_back(command.name.substr(group.size() + 1));
    }
    if (positional.size() < 2) {
      return UsageError(
          absl::StrCat("'", group, "' needs a subcommand: ", absl::StrJoin(verbs, "|")));
    }
    return UsageError(absl::StrCat("unknown command '", group, " ", positional[1],
                                   "' (one of: ", absl::StrJoin(verbs, "|"), ")"));
  }
  return UsageError(absl::StrCat("unknown command '", group, "' (fotctl --help lists them)"));
}

// --help anywhere before "--", or "help" as the command.
bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-h" || arg == "-help" || (i == 1 && arg == "help")) return true;
  }
  return false;
}

absl::Status CheckArgumentCount(const Command& command, const std::vector<std::string>& args) {
  if (static_cast<int>(args.size()) < command.min_args ||
      (command.max_args >= 0 && static_cast<int>(args.size()) > command.max_args)) {
    return UsageError(absl::StrCat(static_cast<int>(args.size()) < command.min_args
                                       ? "missing arguments"
                                       : "too many arguments",
                                   "; usage: fotctl ", command.synopsis));
  }
  return absl::OkStatus();
}

// --layer; unset when negative (its default), which means the first memory layer.
std::optional<int> LayerFlag() {
  return absl::GetFlag(FLAGS_layer) >= 0 ? std::optional<int>(absl::GetFlag(FLAGS_layer))
                                         : std::nullopt;
}

// Flag values that the flag types alone cannot check.
absl::Status CheckFlagValues(const CommandLine& line) {
  if (line.Has("layer") && !LayerFlag().has_value()) return UsageError("--layer must be >= 0");
  if (absl::GetFlag(FLAGS_max_tokens) < 0) return UsageError("--max-tokens must be >= 0");
  if (absl::GetFlag(FLAGS_temperature) < 0) return UsageError("--temperature must be >= 0");
  if (absl::GetFlag(FLAGS_top_p) < 0 || absl::GetFlag(FLAGS_top_p) > 1) {
    return UsageError("--top-p must be in (0, 1]");
  }
  if (absl::GetFlag(FLAGS_offset) < 0) return UsageError("--offset must be >= 0");
  if (absl::GetFlag(FLAGS_limit) < 1) return UsageError("--limit must be >= 1");
  if (absl::GetFlag(FLAGS_radius) < 1) return UsageError("--radius must be >= 1");
  if (absl::GetFlag(FLAGS_top) < 1 || absl::GetFlag(FLAGS_trace_top) < 1) {
    return UsageError(absl::StrCat(line.Has("top") ? "--top" : "--trace-top", " must be >= 1"));
  }
  if (absl::GetFlag(FLAGS_chunk_bytes) < 1 || absl::GetFlag(FLAGS_chunk_bytes) > (4 << 20)) {
    return UsageError("--chunk-bytes must be in [1, 4194304]");
  }
  if (absl::GetFlag(FLAGS_wait) < 0) return UsageError("--wait must be >= 0");
  if (absl::GetFlag(FLAGS_tls_cert).empty() != absl::GetFlag(FLAGS_tls_key).empty()) {
    return UsageError("--tls-cert and --tls-key go together: the client's certificate and its key");
  }
  return absl::OkStatus();
}

// ENTRY of "memory show": false unless it is a number >= 0.
bool ParseEntry(const std::string& arg, int64_t* entry) {
  return absl::SimpleAtoi(arg, entry) && *entry >= 0;
}

// Argument checks that need no server, so that they come before connecting.
absl::Status CheckArguments(const Command& command, const std::vector<std::string>& args) {
  if (command.name == "ingest") {
    const std::vector<std::string> inputs(args.begin() + 1, args.end());
    const int stdin_inputs = std::count(inputs.begin(), inputs.end(), "-");
    if (stdin_inputs > 1) return UsageError("'-' (stdin) may be given once");
    if (stdin_inputs == 1 && absl::GetFlag(FLAGS_doc_id).empty()) {
      return UsageError("ingesting stdin needs --doc-id ID");
    }
    if (!absl::GetFlag(FLAGS_doc_id).empty() && inputs.size() > 1) {
      return UsageError("--doc-id names one document; give one input with it");
    }
  }
  if (command.name == "score" && absl::GetFlag(FLAGS_continuation).empty()) {
    return UsageError("score needs --continuation TEXT");
  }
  if (command.name == "ask" && args[1].empty()) return UsageError("the question is empty");
  int64_t entry = 0;
  if (command.name == "memory show" && !ParseEntry(args[1], &entry)) {
    return UsageError(absl::StrCat("ENTRY must be an entry id (a number), not '", args[1], "'"));
  }
  return absl::OkStatus();
}

// The server's address: --server, else $FOTCTL_SERVER, else the default port here.
std::string ServerAddress() {
  std::string address = absl::GetFlag(FLAGS_server);
  if (address.empty()) {
    const char* env = std::getenv("FOTCTL_SERVER");
    address = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  }
  return address;
}

// The contents of the file a flag names; errors name the flag.
absl::StatusOr<std::string> ReadFlagFile(const std::string& path, const char* flag) {
  auto text = Env::Default()->ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  }
  return text;
}

// The API key: --api-key-file's, else $FOTSERVE_API_KEY, else none. One word,
// surrounding whitespace (a final newline) dropped; never shown in a message.
absl::StatusOr<std::string> ApiKey() {
  std::string key;
  std::string source = "$FOTSERVE_API_KEY";
  if (const std::string path = absl::GetFlag(FLAGS_api_key_file); !path.empty()) {
    FOT_ASSIGN_OR_RETURN(key, ReadFlagFile(path, "--api-key-file"));
    source = "--api-key-file " + path;
    if (absl::StripAsciiWhitespace(key).empty()) {
      return UsageError(absl::StrCat(source, " holds no key"));
    }
  } else if (const char* env = std::getenv("FOTSERVE_API_KEY"); env != nullptr) {
    key = env;
  }
  key = std::string(absl::StripAsciiWhitespace(key));
  for (char c : key) {
    if (c < '!' || c > '~') {
      return UsageError(
          absl::StrCat(source, " must hold one API key: printable ASCII, no spaces or lines"));
    }
  }
  return key;
}

// How to reach the server: TLS and its files, and the key.
absl::StatusOr<ConnectOptions> ConnectOptionsFromFlags(const std::string& address) {
  ConnectOptions options;
  options.address = address;
  options.wait_seconds = absl::GetFlag(FLAGS_wait);
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  options.tls = absl::GetFlag(FLAGS_tls) || !ca.empty() || !cert.empty();
  if (!ca.empty()) {
    FOT_ASSIGN_OR_RETURN(options.tls_ca, ReadFlagFile(ca, "--tls-ca"));
  }
  if (!cert.empty()) {
    FOT_ASSIGN_OR_RETURN(options.tls_cert, ReadFlagFile(cert, "--tls-cert"));
    FOT_ASSIGN_OR_RETURN(options.tls_key, ReadFlagFile(key, "--tls-key"));
  }
  FOT_ASSIGN_OR_RETURN(options.api_key, ApiKey());
  return options;
}

CreateOptions CreateOptionsFromFlags(const CommandLine& line) {
  CreateOptions options;
  options.retrieval = absl::GetFlag(FLAGS_retrieval);
  options.index = absl::GetFlag(FLAGS_index);
  options.memory_dtype = absl::GetFlag(FLAGS_dtype);
  options.last_context_length = absl::GetFlag(FLAGS_last_context);
  options.attention = absl::GetFlag(FLAGS_attention);
  // Given or not: the server tells a fot session's lambda options apart.
  if (line.Has("n_global")) options.n_global = absl::GetFlag(FLAGS_n_global);
  options.local_window = absl::GetFlag(FLAGS_local_window);
  options.memory_positioning = absl::GetFlag(FLAGS_memory_positioning);
  options.memory_layers = absl::GetFlag(FLAGS_memory_layers);
  return options;
}

IngestOptions IngestOptionsFromFlags() {
  IngestOptions options;
  options.doc_id = absl::GetFlag(FLAGS_doc_id);
  options.resume = absl::GetFlag(FLAGS_resume);
  options.keep_open = absl::GetFlag(FLAGS_keep_open);
  options.chunk_bytes = absl::GetFlag(FLAGS_chunk_bytes);
  options.progress = !absl::GetFlag(FLAGS_quiet);
  return options;
}

AskOptions AskOptionsFromFlags(const CommandLine& line) {
  AskOptions options;
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.temperature = absl::GetFlag(FLAGS_temperature);
  options.top_p = absl::GetFlag(FLAGS_top_p);
  options.seed = absl::GetFlag(FLAGS_seed);
  // Every --stop given: absl's flag keeps only the last.
  if (line.Has("stop")) {
    for (const std::string& s : line.flags.at("stop")) options.stop.push_back(Unescape(s));
  }
  options.documents = absl::GetFlag(FLAGS_docs);
  options.retrieval = absl::GetFlag(FLAGS_retrieval);
  options.keep_turn = absl::GetFlag(FLAGS_keep_turn);
  options.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  options.trace = absl::GetFlag(FLAGS_trace);
  options.trace_top = absl::GetFlag(FLAGS_trace_top);
  return options;
}

// Runs `name` with its checked arguments and the flags' values.
absl::Status Dispatch(const Connection& c, const Output& out, const std::string& name,
                      const std::vector<std::string>& args, const CommandLine& line) {
  if (name == "info") return ServerInfo(c, out);
  if (name == "sessions create")
    return CreateSession(c, out, args[0], CreateOptionsFromFlags(line));
  if (name == "sessions ls") return ListSessions(c, out);
  if (name == "sessions show") return ShowSession(c, out, args[0]);
  if (name == "sessions rm") return DeleteSession(c, out, args[0]);
  if (name == "ingest") {
    return Ingest(c, out, args[0], std::vector<std::string>(args.begin() + 1, args.end()),
                  IngestOptionsFromFlags());
  }
  if (name == "ask") return Ask(c, out, args[0], args[1], AskOptionsFromFlags(line));
  if (name == "score") {
    return Score(c, out, args[0], absl::GetFlag(FLAGS_context), absl::GetFlag(FLAGS_continuation),
                 absl::GetFlag(FLAGS_retrieval));
  }
  if (name == "memory stats") return MemoryStats(c, out, args[0]);
  if (name == "memory ls") {
    return MemoryList(c, out, args[0], LayerFlag(), absl::GetFlag(FLAGS_offset),
                      absl::GetFlag(FLAGS_limit));
  }
  if (name == "memory show") {
    int64_t entry = 0;
    ParseEntry(args[1], &entry);  // CheckArguments has accepted it
    return MemoryShow(c, out, args[0], LayerFlag(), entry, absl::GetFlag(FLAGS_radius));
  }
  if (name == "memory search") {
    return MemorySearch(c, out, args[0], args[1], absl::GetFlag(FLAGS_top),
                        absl::GetFlag(FLAGS_retrieval));
  }
  if (name == "memory rm") return MemoryDeleteDocument(c, out, args[0], args[1]);
  if (name == "memory save") {
    return MemorySave(c, out, args[0], args.size() > 1 ? args[1] : args[0],
                      absl::GetFlag(FLAGS_overwrite));
  }
  if (name == "memory load") {
    return MemoryLoad(c, out, args[0], args.size() > 1 ? args[1] : args[0]);
  }
  return UsageError(absl::StrCat("unknown command '", name, "'"));
}

absl::Status Run(int argc, char** argv) {
  if (WantsHelp(argc, argv)) {
    std::fputs(kUsage, stdout);
    return absl::OkStatus();
  }
  // Check flags first, so that every mistake is one line and exit code 2.
  FOT_ASSIGN_OR_RETURN(const CommandLine line, ScanCommandLine(argc, argv));
  const std::vector<std::string> positional = ParseCommandLine(argc, argv, kUsage);
  FOT_ASSIGN_OR_RETURN(const Command* command, FindCommand(positional));
  const int words = command->name.find(' ') == std::string::npos ? 1 : 2;
  const std::vector<std::string> args(positional.begin() + words, positional.end());
  FOT_RETURN_IF_ERROR(CheckArgumentCount(*command, args));
  FOT_RETURN_IF_ERROR(CheckFlagsApply(line, command->flags, kGlobalFlags, command->name));
  FOT_RETURN_IF_ERROR(CheckFlagValues(line));
  const std::string address = ServerAddress();
  const Output out{absl::GetFlag(FLAGS_json)};
  FOT_RETURN_IF_ERROR(CheckArguments(*command, args));
  FOT_ASSIGN_OR_RETURN(const ConnectOptions connect, ConnectOptionsFromFlags(address));
  FOT_ASSIGN_OR_RETURN(const Connection connection, Connect(connect));
  return Dispatch(connection, out, command->name, args, line);
}

}  // namespace
}  // namespace fot::client

int main(int argc, char** argv) {
  const absl::Status status = fot::client::Run(argc, argv);
  if (!status.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "fotctl: %s\n", fot::client::ErrorLine(status).c_str());
  }
  return fot::client::ExitCode(status);
}
