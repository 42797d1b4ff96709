#include "src/server/document_ingest.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "base/utf8.h"

namespace fot {
namespace {

constexpr size_t kMaxDocumentName = 256;

// How far (in commit-rule windows) the committer may lag behind the
// acknowledged stream: queries run that backlog as part of their pending
// tail, so it stays small.
constexpr int64_t kMaxUncommittedWindows = 8;

}  // namespace

DocumentIngest::DocumentIngest(SessionManager* manager, std::shared_ptr<ManagedSession> session,
                               WriterLock lock, std::string document, DocumentState state,
                               int64_t skip, bool add_bos, bool exists)
    : manager_(manager),
      session_(std::move(session)),
      lock_(std::move(lock)),
      document_(std::move(document)),
      state_(state),
      kind_known_(state.offset > 0 || state.tokens > 0),
      skip_(skip),
      add_bos_(add_bos),
      exists_(exists),
      active_(manager->options().metrics, "ingest") {}

absl::StatusOr<std::unique_ptr<DocumentIngest>> DocumentIngest::Open(
    SessionManager* manager, const IngestOpenOptions& options) {
  FOT_ASSIGN_OR_RETURN(std::shared_ptr<ManagedSession> session, manager->Get(options.session));
  const std::string& name = options.document;
  if (name.empty() || name.size() > kMaxDocumentName || !ValidateUtf8(name, false).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a document id must be 1 to ", kMaxDocumentName, " bytes of UTF-8"));
  }
  if (options.offset < 0) return absl::InvalidArgumentError("offset must be >= 0");
  FOT_ASSIGN_OR_RETURN(WriterLock lock,
                       WriterLock::Acquire(session, manager->options().writer_wait));
  auto info = session->session().Document(name);
  const bool exists = info.ok();
  bool known;
  DocumentState state;
  {
    absl::MutexLock l(&session->mu_);
    known = exists || session->documents_.count(name) > 0;
  }
  if (known) state = session->Document(name);
  if (known && !options.resume) {
    return absl::AlreadyExistsError(
        absl::StrCat("document '", name, "' already exists in session '", options.session,
                     "'; set resume to continue it, or delete it and use another id"));
  }
  if (exists && !state.complete) {
    if (info->deleted) {
      return absl::FailedPreconditionError(
          absl::StrCat("document '", name, "' was deleted; it cannot be resumed"));
    }
    if (state.tokens != info->tokens) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document '", name, "' cannot be resumed: the server does not know where its ",
          state.text ? "text" : "token ids", " stand (", info->tokens, " tokens in the session)"));
    }
    const std::vector<DocumentInfo> all = session->session().Documents();
    if (all.back().name != name) {
      return absl::FailedPreconditionError(absl::StrCat(
          "document '", name, "' cannot be resumed: document '", all.back().name,
          "' was ingested after it, and a session's stream is its documents in order"));
    }
  }
  if (!known && options.offset > 0) {
    return absl::OutOfRangeError(absl::StrCat(
        "document '", name, "' is new: its data must start at offset 0, not ", options.offset));
  }
  if (options.offset > state.offset) {
    return absl::OutOfRangeError(absl::StrCat(
        "document '", name, "' holds ", state.offset, state.text ? " bytes" : " tokens",
        "; resume from offset ", state.offset, " or earlier, not ", options.offset));
  }
  std::unique_ptr<DocumentIngest> ingest(
      new DocumentIngest(manager, std::move(session), std::move(lock), name, state,
                         state.offset - options.offset, options.add_bos, exists));
  return ingest;
}

IngestAck DocumentIngest::Ack() const {
  // Only what the storage engine holds (ManagedSession::Durable).
  IngestAck ack;
  const DurableProgress durable = session_->Durable();
  const DocumentState saved = session_->SavedDocument(document_);
  ack.document_tokens = saved.tokens;
  ack.stream_tokens = durable.stream_tokens;
  ack.committed_tokens = durable.committed_tokens;
  ack.resume_offset = saved.offset;
  ack.pending_bytes = text_ != nullptr ? text_->pending() : 0;
  ack.complete = saved.complete;
  return ack;
}

absl::Status DocumentIngest::Append(absl::Span<const int> ids) {
  if (ids.empty()) return absl::OkStatus();
  FOT_RETURN_IF_ERROR(CheckTokenIds(manager_->engine().config(), ids));
  Session& session = session_->session();
  FOT_RETURN_IF_ERROR(
      manager_->CheckCapacity(*session_, static_cast<int64_t>(ids.size()), !exists_));
  if (!exists_) {
    FOT_RETURN_IF_ERROR(session.StartDocument(document_).status());
    exists_ = true;
  }
  // Committed behind the acknowledgement (AfterAck).
  FOT_ASSIGN_OR_RETURN(IngestProgress progress,
                       session.AppendToDocument(document_, ids, /*commit=*/false));
  state_.tokens = progress.document_tokens;
  if (ServerMetrics* metrics = manager_->options().metrics) {
    metrics->AddIngestedTokens(static_cast<int64_t>(ids.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<IngestAck> DocumentIngest::Chunk(std::string_view text,
                                                absl::Span<const int> token_ids,
                                                bool end_of_document) {
  if (manager_->shutting_down()) return absl::UnavailableError("the server is shutting down");
  FOT_RETURN_IF_ERROR(WaitForCommitter());
  if (!text.empty() && !token_ids.empty()) {
    return absl::InvalidArgumentError("a chunk holds text or token ids, not both");
  }
  {
    absl::MutexLock lock(&session_->mu_);
    if (session_->deleted_) {
      return absl::NotFoundError(absl::StrCat("session '", session_->name_, "' was deleted"));
    }
  }
  // Data the server already holds (a resumed stream resending it) is skipped.
  const int64_t size =
      text.empty() ? static_cast<int64_t>(token_ids.size()) : static_cast<int64_t>(text.size());
  const int64_t drop = std::min(skip_, size);
  skip_ -= drop;
  if (!text.empty()) {
    text.remove_prefix(drop);
  } else {
    token_ids.remove_prefix(drop);
  }
  if (state_.complete) {
    if (!text.empty() || !token_ids.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("document '", document_, "' is complete; it cannot grow"));
    }
    return Ack();
  }
  if (end_of_document && skip_ > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the document ends at offset ", state_.offset - skip_,
                     " but the server already holds ", state_.offset));
  }
  const bool is_text = !text.empty();
  if (!text.empty() || !token_ids.empty()) {
    if (kind_known_ && state_.text != is_text) {
      return absl::InvalidArgumentError(
          absl::StrCat("document '", document_, "' is sent as ", state_.text ? "text" : "token ids",
                       "; a chunk cannot switch to ", is_text ? "text" : "token ids"));
    }
    state_.text = is_text;
    kind_known_ = true;
  }
  absl::ReleasableMutexLock append(&session_->append_mu_);
  if (state_.text) {
    if (text_ == nullptr) {
      text_ = std::make_unique<DocumentTokenizer>(&manager_->tokenizer(), state_.offset);
    }
    std::vector<int> ids;
    FOT_RETURN_IF_ERROR(text_->Feed(text, end_of_document, &ids));
    if (text_->pending() > manager_->options().max_pending_text_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "document '", document_, "' has more than ", manager_->options().max_pending_text_bytes,
          " bytes without a space to cut at; send it as token ids"));
    }
    const int bos = manager_->tokenizer().bos_id();
    if (add_bos_ && state_.offset == 0 && state_.tokens == 0 && !ids.empty() && bos >= 0) {
      ids.insert(ids.begin(), bos);
    }
    FOT_RETURN_IF_ERROR(Append(ids));
    state_.offset = text_->consumed();
  } else {
    FOT_RETURN_IF_ERROR(Append(token_ids));
    state_.offset += static_cast<int64_t>(token_ids.size());
  }
  if (end_of_document) {
    if (state_.tokens == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("document '", document_, "' is empty: it has no tokens"));
    }
    state_.complete = true;
  }
  {
    absl::MutexLock lock(&session_->mu_);
    session_->documents_[document_] = state_;
  }
  append.Release();
  FOT_RETURN_IF_ERROR(manager_->Persist(*session_, /*memory=*/false));
  return Ack();
}

void DocumentIngest::AfterAck() {
  absl::MutexLock lock(&commit_mu_);
  commit_wanted_ = true;
  if (!committer_.joinable()) committer_ = std::thread([this] { CommitLoop(); });
}

void DocumentIngest::CommitLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&commit_mu_);
      commit_mu_.Await(absl::Condition(this, &DocumentIngest::CommitterHasWork));
      if (!commit_wanted_) return;  // stopping, with nothing asked
      commit_wanted_ = false;
    }
    absl::Status status = session_->session().Commit();
    if (status.ok()) status = manager_->Persist(*session_);
    if (status.ok()) manager_->MaybeCheckpoint(*session_);
    absl::MutexLock lock(&commit_mu_);
    if (!status.ok() && commit_status_.ok()) commit_status_ = status;
  }
}

absl::Status DocumentIngest::CommitterStatus() {
  absl::MutexLock lock(&commit_mu_);
  if (commit_status_.ok()) return absl::OkStatus();
  return absl::Status(commit_status_.code(),
                      absl::StrCat("committing the acknowledged text to memory failed: ",
                                   commit_status_.message()));
}

absl::Status DocumentIngest::WaitForCommitter() {
  // A client that outpaces the model waits here, about one chunk's worth of
  // commits per chunk (the committer advances a window at a time), rather
  // than growing the backlog that every query has to run.
  const int64_t limit =
      kMaxUncommittedWindows * manager_->engine().config().max_position_embeddings;
  for (bool asked = false;; asked = true) {
    FOT_RETURN_IF_ERROR(CommitterStatus());
    const IngestProgress progress = session_->session().Progress();
    if (progress.stream_tokens - progress.committed_tokens <= limit) return absl::OkStatus();
    if (manager_->shutting_down()) return absl::UnavailableError("the server is shutting down");
    if (!asked) AfterAck();  // the backlog may predate this stream's committer
    absl::SleepFor(absl::Milliseconds(1));
  }
}

absl::Status DocumentIngest::CatchUp() {
  FOT_RETURN_IF_ERROR(session_->session().Commit());
  return manager_->Persist(*session_);
}

DocumentIngest::~DocumentIngest() {
  {
    absl::MutexLock lock(&commit_mu_);
    stopping_ = true;
  }
  if (committer_.joinable()) committer_.join();
}

absl::StatusOr<IngestAck> DocumentIngest::Close() {
  // What arrived is committed and written before the stream's last answer.
  FOT_RETURN_IF_ERROR(CatchUp());
  return Ack();
}

}  // namespace fot
