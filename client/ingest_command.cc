// fotctl ingest SESSION FILE...|-: streams each input as one document, with a
// progress bar, resumption (--resume) and one automatic retry of a broken
// stream from the last acknowledged offset.
//
// The writer (this thread) sends chunks as fast as gRPC's flow control lets
// it; a reader thread takes the server's acknowledgements, which move the
// progress bar and the offset a retry resumes from.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/utf8.h"
#include "client/byte_source.h"
#include "client/commands.h"
#include "client/progress.h"
#include "client/proto_json.h"
#include "client/text_check.h"

namespace fot::client {
namespace {

constexpr std::chrono::seconds kReconnectWait(10);

struct StreamResult {
  grpc::Status status;
  int64_t acked_offset;  // the latest resume_offset the server acknowledged
  bool acknowledged = false;
  fot::v1::IngestResponse last;
};

struct DocumentPlan {
  std::string name;
  std::unique_ptr<ByteSource> source;
  int64_t offset = 0;  // first byte to send
  bool add_bos = false;
  bool resume = false;
  bool already_complete = false;
};

// One Ingest stream: open, chunks from plan.offset on, end_of_document unless
// keep_open.
StreamResult RunStream(const Connection& c, const std::string& session, DocumentPlan& plan,
                       const IngestOptions& options, ProgressBar& progress) {
  StreamResult result;
  result.acked_offset = plan.offset;
  if (absl::Status seek = plan.source->Seek(plan.offset); !seek.ok()) {
    result.status =
        grpc::Status(static_cast<grpc::StatusCode>(seek.code()), std::string(seek.message()));
    return result;
  }
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<fot::v1::IngestRequest, fot::v1::IngestResponse>>
      stream = c.stub->Ingest(&context);

  std::atomic<int64_t> acked{plan.offset};
  std::thread reader([&] {
    fot::v1::IngestResponse response;
    while (stream->Read(&response)) {
      acked.store(response.resume_offset());
      result.last = response;
      result.acknowledged = true;
      progress.Update(response.resume_offset() + response.pending_bytes(),
                      response.document_tokens());
    }
  });

  fot::v1::IngestRequest open;
  open.mutable_open()->set_session(session);
  open.mutable_open()->set_document(plan.name);
  open.mutable_open()->set_resume(plan.resume);
  open.mutable_open()->set_offset(plan.offset);
  open.mutable_open()->set_add_bos(plan.add_bos);
  absl::Status local = CheckText(open);  // a bad name, or a read error of the input
  bool writing = local.ok() && stream->Write(open);
  std::string carry;  // the start of a character the last chunk would have cut

  // Read one chunk ahead, so the last chunk can carry end_of_document.
  absl::StatusOr<std::string> next = plan.source->Read(options.chunk_bytes);
  while (writing) {
    if (!next.ok()) {
      local = next.status();
      break;
    }
    const std::string raw = std::move(*next);
    next = raw.empty() ? std::string() : plan.source->Read(options.chunk_bytes);
    const bool last = next.ok() && next->empty();
    // Chunks end between characters: text travels in `string` fields.
    std::string data = std::move(carry) + raw;
    carry = data.substr(last ? data.size() : CompleteCharactersPrefix(data));
    data.resize(data.size() - carry.size());
    if (data.empty() && last && options.keep_open) break;
    fot::v1::IngestRequest request;
    request.mutable_chunk()->set_text(std::move(data));
    request.mutable_chunk()->set_end_of_document(last && !options.keep_open);
    if (local = CheckText(request); !local.ok()) break;
    writing = stream->Write(request);
    plan.source->Release(acked.load());
    if (last) break;
  }
  if (!local.ok()) context.TryCancel();
  stream->WritesDone();
  reader.join();
  result.status = stream->Finish();
  result.acked_offset = acked.load();
  if (!local.ok()) {
    result.status = grpc::Status(absl::IsInvalidArgument(local) ? grpc::StatusCode::INVALID_ARGUMENT
                                                                : grpc::StatusCode::DATA_LOSS,
                                 std::string(local.message()));
  }
  return result;
}

}  // namespace

absl::Status Ingest(const Connection& c, const Output& out, const std::string& session,
                    const std::vector<std::string>& inputs, const IngestOptions& options) {
  absl::StatusOr<fot::v1::SessionInfo> info = GetSession(c, session);
  if (!info.ok()) return info.status();

  // Open every input first, so a typo fails before anything is sent.
  std::vector<DocumentPlan> plans;
  for (const std::string& input : inputs) {
    DocumentPlan plan;
    absl::StatusOr<std::unique_ptr<ByteSource>> source = ByteSource::Open(input);
    if (!source.ok()) return source.status();
    plan.source = std::move(*source);
    plan.name =
        !options.doc_id.empty() ? options.doc_id : std::filesystem::path(input).filename().string();
    plan.resume = options.resume;
    plans.push_back(std::move(plan));
  }
  // A session's first document starts with BOS, as fot-run's prompts do.
  bool session_empty = info->stream_tokens() == 0 && info->documents().empty();
  for (DocumentPlan& plan : plans) {
    for (const auto& d : info->documents()) {
      if (d.name() != plan.name || !options.resume) continue;
      if (!d.text()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "document '", plan.name, "' was ingested as token ids; fotctl resumes text only"));
      }
      plan.offset = d.resume_offset();
      plan.already_complete = d.complete();
    }
    plan.add_bos = session_empty;
    session_empty = false;
  }

  const bool tty = isatty(fileno(stderr));
  nlohmann::json documents = nlohmann::json::array();
  for (DocumentPlan& plan : plans) {
    if (plan.already_complete) {
      if (!out.json) std::fprintf(stderr, "%s: already complete\n", plan.name.c_str());
      documents.push_back({{"document", plan.name}, {"already_complete", true}});
      continue;
    }
    const int64_t start_offset = plan.offset;
    ProgressBar progress(plan.name, plan.source->size(), plan.offset, 0, stderr, tty,
                         options.progress && (tty || !out.json));
    StreamResult result = RunStream(c, session, plan, options, progress);
    bool retried = false;
    if (!result.status.ok() && IsRetriable(result.status)) {
      // A broken stream: once, reopen the document where the server has it
      // (giving a restarting server a few seconds to come back).
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      c.channel->WaitForConnected(std::chrono::system_clock::now() + kReconnectWait);
      plan.offset = result.acked_offset;
      plan.resume = true;
      retried = true;
      result = RunStream(c, session, plan, options, progress);
    }
    if (!result.status.ok()) {
      if (tty && options.progress) std::fputc('\n', stderr);
      absl::Status status = FromGrpc(result.status, c.address);
      if (result.status.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        status = absl::AlreadyExistsError(
            absl::StrCat(status.message(), " (--resume continues an open document)"));
      }
      return status;
    }
    progress.Finish();
    const fot::v1::IngestResponse& last = result.last;
    const double seconds = progress.seconds();
    documents.push_back({{"document", plan.name},
                         {"tokens", last.document_tokens()},
                         {"bytes", last.resume_offset()},
                         {"resumed_from", start_offset},
                         {"retried", retried},
                         {"complete", last.complete()},
                         {"stream_tokens", last.stream_tokens()},
                         {"committed_tokens", last.committed_tokens()},
                         {"seconds", seconds}});
  }
  if (out.json) PrintJson({{"session", session}, {"documents", documents}});
  return absl::OkStatus();
}

}  // namespace fot::client
