// fot-server's HTTP port over cpp-httplib (see http_server.h). Each route
// checks the key, parses the body (openai_api.h), and runs the query through
// the same Generation as the gRPC service; a streamed answer is written by a
// chunked content provider on the request's own thread, so a client that
// goes away fails a write and stops the generation.
#include "src/http/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "src/http/inspector_api.h"
#include "src/http/inspector_page.h"
#include "src/http/openai_api.h"
#include "src/http/tls_context.h"
#include "src/server/generation.h"
#include "src/server/query_provenance.h"

namespace fot::http {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// When the request being served on this thread arrived (cpp-httplib serves a
// request on one thread from routing to the last byte and the logger).
thread_local std::optional<Clock::time_point> request_start;

// The route of a request, as the metrics name it.
std::string RouteOf(const httplib::Request& req) {
  const std::string& p = req.path;
  if (req.method == "GET") {
    if (p == "/v1/models") return "GET /v1/models";
    if (absl::StartsWith(p, "/v1/models/")) return "GET /v1/models/{model}";
    if (p == "/metrics") return "GET /metrics";
    if (p == "/healthz") return "GET /healthz";
    if (p == "/") return "GET /";
    if (p == "/fotserve/v1/sessions") return "GET /fotserve/v1/sessions";
    if (absl::StartsWith(p, "/fotserve/v1/sessions/")) {
      if (absl::EndsWith(p, "/tokens")) return "GET /fotserve/v1/sessions/{name}/tokens";
      if (absl::EndsWith(p, "/context")) {
        return "GET /fotserve/v1/sessions/{name}/entries/{id}/context";
      }
      return "GET /fotserve/v1/sessions/{name}";
    }
  } else if (req.method == "POST") {
    if (p == "/v1/completions") return "POST /v1/completions";
    if (p == "/v1/chat/completions") return "POST /v1/chat/completions";
  }
  return "other";
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void SendError(httplib::Response& res, const ApiError& error) {
  if (error.http_status == 401) res.set_header("WWW-Authenticate", "Bearer");
  SendJson(res, error.http_status, ErrorJson(error));
}

void SendStatus(httplib::Response& res, const absl::Status& status, bool model_lookup = false) {
  SendError(res, ErrorOf(status, model_lookup));
}

// An id for a response: prefix and 24 random hex digits.
std::string NewId(std::string_view prefix) {
  thread_local std::mt19937_64 random(std::random_device{}());
  char digits[25];
  std::snprintf(digits, sizeof(digits), "%012llx%012llx",
                static_cast<unsigned long long>(random() & 0xffffffffffffULL),
                static_cast<unsigned long long>(random() & 0xffffffffffffULL));
  return absl::StrCat(std::string(prefix), digits);
}

uint64_t RandomSeed() {
  thread_local std::mt19937_64 random(std::random_device{}());
  return random();
}

// One streamed answer: runs the generation inside the chunked content
// provider, writing each token as a server-sent event.
struct StreamedAnswer {
  SessionManager* manager;
  std::unique_ptr<Generation> generation;
  CompletionRequest request;
  ResponseIds ids;
  std::optional<QueryProvenance> provenance;

  // Returns false when the client went away (cpp-httplib closes the
  // connection).
  bool Write(httplib::DataSink& sink);
};

bool StreamedAnswer::Write(httplib::DataSink& sink) {
  const bool chat = request.chat;
  const Tokenizer& tokenizer = manager->tokenizer();
  bool first = true, client_gone = false;
  Clock::time_point last_write = Clock::now();
  const auto write = [&](std::string_view data) {
    if (client_gone) return false;
    if (!sink.write(data.data(), data.size())) client_gone = true;
    last_write = Clock::now();
    return !client_gone;
  };
  const auto on_token = [&](const GeneratedToken& token, const std::string& text, const float*) {
    std::optional<json> detail;
    if (provenance.has_value()) {
      provenance->AddQueryToken(token.token);
      detail = TokenJson(token.token, tokenizer.PieceText(token.token), text, &*provenance,
                         &token.traces);
    }
    if (!text.empty() || detail.has_value() || first) {
      write(SseEvent(CompletionChunk(chat, ids, text, first, std::nullopt,
                                     detail.has_value() ? &*detail : nullptr)));
      first = false;
    }
    return !client_gone && !manager->shutting_down();
  };
  const auto cancelled = [&] {
    if (manager->shutting_down()) return true;
    // During a long prefill nothing else is written: a comment line (which
    // clients skip) now and then finds out whether the client is still there.
    if (Clock::now() - last_write > std::chrono::seconds(1)) write(": prefill\n\n");
    return client_gone;
  };
  absl::StatusOr<QueryResult> result = generation->Run(on_token, cancelled);
  if (client_gone) return false;
  absl::Status failure = result.status();
  if (manager->shutting_down()) failure = absl::UnavailableError("the server is shutting down");
  std::optional<GenerationEnd> end;
  if (failure.ok()) {
    absl::StatusOr<GenerationEnd> finished = generation->Finish(*result);
    failure = finished.status();
    if (finished.ok()) end = *std::move(finished);
  }
  if (!failure.ok()) {
    // OpenAI's clients raise an error event met in the stream.
    write(SseEvent(ErrorJson(ErrorOf(failure))));
    sink.done();
    return true;
  }
  write(SseEvent(CompletionChunk(chat, ids, end->text, first, end->finish, nullptr)));
  if (request.include_usage) {
    write(SseEvent(UsageChunk(chat, ids, end->prompt_tokens, end->generated_tokens)));
  }
  write(kSseDone);
  if (client_gone) return false;
  sink.done();
  return true;
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> ParseListenAddress(const std::string& listen) {
  std::string host = "127.0.0.1";
  std::string port = listen;
  if (const size_t colon = listen.rfind(':'); colon != std::string::npos) {
    port = listen.substr(colon + 1);
    if (colon > 0) host = listen.substr(0, colon);
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int number = 0;
  if (host.empty() || host.find_first_of("[]") != std::string::npos ||
      !absl::SimpleAtoi(port, &number) || number < 0 || number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http_listen '", listen, "' is not HOST:PORT, :PORT or PORT (port 0 picks one)"));
  }
  return std::make_pair(host, number);
}

struct HttpServer::Impl {
  HttpServerOptions options;
  std::unique_ptr<httplib::Server> server;  // an httplib::SSLServer with TLS
  std::string host;
  int port = 0;
  std::thread thread;
  std::atomic<SessionManager*> manager{nullptr};
  absl::Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;

  void AddRoutes();
  // The caller's grant: everything without keys, else its key's.
  absl::StatusOr<Grant> Authenticate(const httplib::Request& req) const;
  // fot::CheckGrant for req's caller.
  absl::Status CheckGrant(const httplib::Request& req, const Grant& grant, Scope needed,
                          std::string_view method,
                          std::initializer_list<std::string_view> names) const;
  // Logs a refusal of req (RefusalLog ignores other statuses); returns `status`.
  absl::Status Logged(const httplib::Request& req, absl::Status status) const;
  // The manager once attached; Unavailable before.
  absl::StatusOr<SessionManager*> Manager() const;

  void Models(const httplib::Request& req, httplib::Response& res) const;
  void Model(const httplib::Request& req, httplib::Response& res) const;
  void Complete(const httplib::Request& req, httplib::Response& res, bool chat) const;
  void Metrics(const httplib::Request& req, httplib::Response& res) const;
  // The inspector's views (inspector_api.h): `what` of the session in
  // req.matches[1].
  enum class View { kSession, kTokens, kEntryContext };
  void Sessions(const httplib::Request& req, httplib::Response& res) const;
  void SessionView(const httplib::Request& req, httplib::Response& res, View what) const;
  void Health(httplib::Response& res) const;
};

absl::StatusOr<Grant> HttpServer::Impl::Authenticate(const httplib::Request& req) const {
  if (options.api_keys == nullptr) return Grant{};
  absl::StatusOr<Grant> grant =
      options.api_keys->Authenticate(req.get_header_value("Authorization"));
  if (!grant.ok()) return Logged(req, grant.status());
  return grant;
}

absl::Status HttpServer::Impl::CheckGrant(const httplib::Request& req, const Grant& grant,
                                          Scope needed, std::string_view method,
                                          std::initializer_list<std::string_view> names) const {
  return Logged(req, fot::CheckGrant(grant, needed, method, names));
}

absl::Status HttpServer::Impl::Logged(const httplib::Request& req, absl::Status status) const {
  if (!status.ok() && options.refusals != nullptr) {
    options.refusals->Refused("http", absl::StrCat(req.method, " ", req.path),
                              absl::StrCat(req.remote_addr, ":", req.remote_port), status);
  }
  return status;
}

absl::StatusOr<SessionManager*> HttpServer::Impl::Manager() const {
  SessionManager* m = manager.load();
  if (m == nullptr) return absl::UnavailableError("the model is loading; retry");
  if (m->shutting_down()) return absl::UnavailableError("the server is shutting down");
  return m;
}

namespace {

json ModelObject(const ManagedSession& managed, const ChatTemplate& chat_template) {
  const Session& session = managed.session();
  const IngestProgress progress = session.Progress();
  return json{{"id", managed.name()},
              {"object", "model"},
              {"created", 0},
              {"owned_by", "fotserve"},
              {"fotserve",
               {{"retrieval", DescribeRetrieval(session.options().retrieval)},
                {"index", DescribeOptions(session.options().memory)},
                {"stream_tokens", progress.stream_tokens},
                {"committed_tokens", progress.committed_tokens},
                {"documents", session.Documents().size()},
                {"chat_template", chat_template.source}}}};
}

}  // namespace

void HttpServer::Impl::Models(const httplib::Request& req, httplib::Response& res) const {
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, "models", {}); !s.ok()) {
    return SendStatus(res, s);
  }
  absl::StatusOr<SessionManager*> m = Manager();
  if (!m.ok()) return SendStatus(res, m.status());
  json data = json::array();
  for (const auto& session : (*m)->List()) {
    if (!grant->Covers(session->name())) continue;
    data.push_back(ModelObject(*session, options.chat_template));
  }
  SendJson(res, 200, json{{"object", "list"}, {"data", std::move(data)}});
}

void HttpServer::Impl::Model(const httplib::Request& req, httplib::Response& res) const {
  const std::string name = req.path.substr(std::string_view("/v1/models/").size());
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, "models", {name}); !s.ok()) {
    return SendStatus(res, s);
  }
  absl::StatusOr<SessionManager*> m = Manager();
  if (!m.ok()) return SendStatus(res, m.status());
  absl::StatusOr<std::shared_ptr<ManagedSession>> session = (*m)->Get(name);
  if (!session.ok()) return SendStatus(res, session.status(), /*model_lookup=*/true);
  SendJson(res, 200, ModelObject(**session, options.chat_template));
}

void HttpServer::Impl::Complete(const httplib::Request& req, httplib::Response& res,
                                bool chat) const {
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  absl::StatusOr<SessionManager*> m = Manager();
  if (!m.ok()) return SendStatus(res, m.status());
  SessionManager* manager = *m;
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return SendStatus(res, InvalidParam("", "the request body is not valid JSON"));
  }
  absl::StatusOr<CompletionRequest> parsed =
      chat ? ParseChatRequest(body, options.chat_template) : ParseCompletionRequest(body);
  if (!parsed.ok()) return SendStatus(res, parsed.status());
  CompletionRequest request = *std::move(parsed);
  const char* method = chat ? "chat.completions" : "completions";
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, method, {request.model});
      !s.ok()) {
    return SendStatus(res, s);
  }
  absl::StatusOr<std::shared_ptr<ManagedSession>> managed = manager->Get(request.model);
  if (!managed.ok()) return SendStatus(res, managed.status(), /*model_lookup=*/true);
  const Tokenizer& tokenizer = manager->tokenizer();
  std::vector<int> question = request.prompt_token_ids.empty() ? tokenizer.Encode(request.prompt)
                                                               : request.prompt_token_ids;
  if (question.empty()) return SendStatus(res, InvalidParam("prompt", "the prompt has no tokens"));
  if (!request.has_seed) request.params.sampling.seed = RandomSeed();
  absl::StatusOr<std::unique_ptr<Generation>> generation =
      Generation::Prepare(manager, *managed, std::move(question), request.params, options.metrics);
  if (!generation.ok()) return SendStatus(res, generation.status());
  std::optional<QueryProvenance> provenance;
  if (request.params.trace) {
    provenance.emplace((*managed)->session(), tokenizer);
    for (int t : (*generation)->question()) provenance->AddQueryToken(t);
  }
  ResponseIds ids{NewId(chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                  request.model};

  if (request.stream) {
    auto answer = std::make_shared<StreamedAnswer>();
    answer->manager = manager;
    answer->generation = *std::move(generation);
    answer->request = std::move(request);
    answer->ids = std::move(ids);
    if (provenance.has_value()) answer->provenance.emplace(std::move(*provenance));
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [answer](size_t, httplib::DataSink& sink) { return answer->Write(sink); });
    return;
  }

  std::string text;
  json tokens = json::array();
  const auto on_token = [&](const GeneratedToken& token, const std::string& piece_text,
                            const float*) {
    text += piece_text;
    if (provenance.has_value()) {
      provenance->AddQueryToken(token.token);
      tokens.push_back(TokenJson(token.token, tokenizer.PieceText(token.token), piece_text,
                                 &*provenance, &token.traces));
    }
    return !manager->shutting_down();
  };
  absl::StatusOr<QueryResult> result =
      (*generation)->Run(on_token, [manager] { return manager->shutting_down(); });
  if (manager->shutting_down()) {
    return SendStatus(res, absl::UnavailableError("the server is shutting down"));
  }
  if (!result.ok()) return SendStatus(res, result.status());
  absl::StatusOr<GenerationEnd> end = (*generation)->Finish(*result);
  if (!end.ok()) return SendStatus(res, end.status());
  text += end->text;
  SendJson(res, 200,
           CompletionResponse(chat, ids, text, end->finish, end->prompt_tokens,
                              end->generated_tokens, provenance.has_value() ? &tokens : nullptr));
}

void HttpServer::Impl::Metrics(const httplib::Request& req, httplib::Response& res) const {
  if (options.metrics == nullptr) {
    return SendStatus(res, absl::NotFoundError("this server keeps no metrics"));
  }
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, "metrics", {}); !s.ok()) {
    return SendStatus(res, s);
  }
  if (!grant->prefix.empty()) {
    return SendStatus(res, absl::PermissionDeniedError(
                               absl::StrCat("metrics name every session: a key limited to prefix=",
                                            grant->prefix, " cannot read them")));
  }
  res.status = 200;
  res.set_content(options.metrics->Render(manager.load()),
                  std::string(metrics::Registry::kContentType));
}

void HttpServer::Impl::Sessions(const httplib::Request& req, httplib::Response& res) const {
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, "sessions", {}); !s.ok()) {
    return SendStatus(res, s);
  }
  absl::StatusOr<SessionManager*> m = Manager();
  if (!m.ok()) return SendStatus(res, m.status());
  json sessions = json::array();
  for (const auto& session : (*m)->List()) {
    if (grant->Covers(session->name())) sessions.push_back(SessionJson(*session, false));
  }
  SendJson(res, 200, json{{"sessions", std::move(sessions)}});
}

namespace {

// The integer query parameter `name`, or `fallback` when absent.
absl::StatusOr<int64_t> IntParam(const httplib::Request& req, const char* name, int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  int64_t value = 0;
  if (!absl::SimpleAtoi(req.get_param_value(name), &value)) {
    return InvalidParam(name, absl::StrCat("'", name, "' must be an integer"));
  }
  return value;
}

}  // namespace

void HttpServer::Impl::SessionView(const httplib::Request& req, httplib::Response& res,
                                   View what) const {
  const std::string name = req.matches[1];
  absl::StatusOr<Grant> grant = Authenticate(req);
  if (!grant.ok()) return SendStatus(res, grant.status());
  if (absl::Status s = CheckGrant(req, *grant, Scope::kReadOnly, "sessions", {name}); !s.ok()) {
    return SendStatus(res, s);
  }
  absl::StatusOr<SessionManager*> m = Manager();
  if (!m.ok()) return SendStatus(res, m.status());
  absl::StatusOr<std::shared_ptr<ManagedSession>> session = (*m)->Get(name);
  if (!session.ok()) return SendStatus(res, session.status());
  const Tokenizer& tokenizer = (*m)->tokenizer();
  absl::StatusOr<json> out;
  if (what == View::kSession) {
    out = SessionJson(**session, /*with_documents=*/true);
  } else if (what == View::kTokens) {
    absl::StatusOr<int64_t> first = IntParam(req, "first", 0);
    absl::StatusOr<int64_t> count = IntParam(req, "count", 1024);
    if (!first.ok()) return SendStatus(res, first.status());
    if (!count.ok()) return SendStatus(res, count.status());
    out = StreamTokensJson(**session, tokenizer, *first, *count);
  } else {
    const Session& s = (*session)->session();
    const int64_t first_layer = s.memory_layers().empty() ? 0 : s.memory_layers().front();
    absl::StatusOr<int64_t> layer = IntParam(req, "layer", first_layer);
    absl::StatusOr<int64_t> radius = IntParam(req, "radius", 16);
    int64_t id = 0;
    if (!absl::SimpleAtoi(std::string(req.matches[2]), &id)) {
      return SendStatus(res, InvalidParam("id", "the entry id must be an integer"));
    }
    if (!layer.ok()) return SendStatus(res, layer.status());
    if (!radius.ok()) return SendStatus(res, radius.status());
    out =
        EntryContextJson(**session, tokenizer, static_cast<int>(*layer), id,
                         static_cast<int>(std::clamp<int64_t>(*radius, 0, kMaxContextRadius + 1)));
  }
  if (!out.ok()) return SendStatus(res, out.status());
  SendJson(res, 200, *out);
}

void HttpServer::Impl::Health(httplib::Response& res) const {
  SessionManager* m = manager.load();
  const char* state = m == nullptr         ? "loading the model"
                      : m->shutting_down() ? "shutting down"
                      : !m->loaded()       ? "loading stored sessions"
                                           : nullptr;
  if (state != nullptr) return SendJson(res, 503, json{{"status", state}});
  SendJson(res, 200, json{{"status", "ok"}, {"sessions", m->size()}});
}

void HttpServer::Impl::AddRoutes() {
  server->Get("/v1/models",
              [this](const httplib::Request& req, httplib::Response& res) { Models(req, res); });
  server->Get(R"(/v1/models/(.+))",
              [this](const httplib::Request& req, httplib::Response& res) { Model(req, res); });
  server->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Complete(req, res, /*chat=*/false);
  });
  server->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Complete(req, res, /*chat=*/true);
  });
  server->Get("/metrics",
              [this](const httplib::Request& req, httplib::Response& res) { Metrics(req, res); });
  server->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) { Health(res); });
  // The web memory inspector and the views it reads.
  server->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kInspectorPage, "text/html; charset=utf-8");
  });
  server->Get("/fotserve/v1/sessions",
              [this](const httplib::Request& req, httplib::Response& res) { Sessions(req, res); });
  server->Get(R"(/fotserve/v1/sessions/([^/]+))",
              [this](const httplib::Request& req, httplib::Response& res) {
                SessionView(req, res, View::kSession);
              });
  server->Get(R"(/fotserve/v1/sessions/([^/]+)/tokens)",
              [this](const httplib::Request& req, httplib::Response& res) {
                SessionView(req, res, View::kTokens);
              });
  server->Get(R"(/fotserve/v1/sessions/([^/]+)/entries/(\d+)/context)",
              [this](const httplib::Request& req, httplib::Response& res) {
                SessionView(req, res, View::kEntryContext);
              });

  server->set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    request_start = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors cpp-httplib answers itself (unknown routes, 413, malformed
  // requests) in OpenAI's shape too.
  server->set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        absl::Status status;
        if (res.status == 404) {
          status = absl::NotFoundError(absl::StrCat("no route ", req.method, " ", req.path));
        } else if (res.status == 413) {
          status = absl::InvalidArgumentError("the request body is too large");
        } else {
          status = absl::InvalidArgumentError(absl::StrCat("HTTP ", res.status));
        }
        ApiError error = ErrorOf(status);
        error.http_status = res.status;
        SendError(res, error);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        SendStatus(res, absl::InternalError(what));
      });
  // Counts every request once its last byte is written.
  server->set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const double seconds =
        request_start.has_value()
            ? std::chrono::duration<double>(Clock::now() - *request_start).count()
            : 0.0;
    request_start.reset();
    if (options.metrics != nullptr) {
      options.metrics->CountRequest("http", RouteOf(req), absl::StrCat(res.status), seconds);
    }
  });
}

namespace {

// Plain HTTP, or HTTPS with `tls` when it is enabled.
absl::StatusOr<std::unique_ptr<httplib::Server>> NewServer(const TlsConfig& tls) {
  if (!tls.enabled()) return std::make_unique<httplib::Server>();
  absl::Status configured;
  auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
    configured = ConfigureTlsContext(tls, &ctx);
    return configured.ok();
  });
  if (!configured.ok()) return configured;
  if (!server->is_valid()) return absl::InternalError("the HTTP port's TLS could not be set up");
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  absl::StatusOr<std::pair<std::string, int>> address = ParseListenAddress(options.listen);
  if (!address.ok()) return address.status();
  if (options.threads < 1) return absl::InvalidArgumentError("the HTTP port needs threads >= 1");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->host = address->first;
  Impl* p = impl.get();
  absl::StatusOr<std::unique_ptr<httplib::Server>> server = NewServer(p->options.tls);
  if (!server.ok()) return server.status();
  p->server = *std::move(server);
  const int threads = p->options.threads;
  p->server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  p->server->set_payload_max_length(p->options.max_body_bytes);
  const auto write_timeout = absl::ToChronoMicroseconds(p->options.write_timeout);
  p->server->set_write_timeout(write_timeout);
  p->server->set_tcp_nodelay(true);
  p->AddRoutes();
  if (address->second == 0) {
    p->port = p->server->bind_to_any_port(p->host);
    if (p->port <= 0) p->port = 0;
  } else if (p->server->bind_to_port(p->host, address->second)) {
    p->port = address->second;
  }
  if (p->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", p->options.listen, " (HTTP)"));
  }
  p->thread = std::thread([p] { p->server->listen_after_bind(); });
  // Running before Start returns, so that a Shutdown right after stops it.
  for (int i = 0; i < 1000 && !p->server->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

const std::string& HttpServer::host() const { return impl_->host; }
int HttpServer::port() const { return impl_->port; }

void HttpServer::Attach(SessionManager* manager) { impl_->manager.store(manager); }

void HttpServer::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shut_down) return;
    impl_->shut_down = true;
  }
  impl_->server->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace fot::http
