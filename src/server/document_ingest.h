// One document's ingest stream into a managed session: resume offsets,
// text or token ids, and acknowledgements that report only what is saved.
//
// An acknowledgement waits for its tokens to be on disk, not for the model:
// the windows they complete are committed to memory (and written) by the
// stream's committer thread behind the acknowledgements, as a write-ahead
// log is applied. A restart commits what was acknowledged and not yet
// committed. The committer stays at most kMaxUncommittedWindows windows
// behind; beyond that a chunk waits for it.
//
// A DocumentIngest belongs to one stream (one thread); its committer is
// internal.
#ifndef FOTSERVE_SRC_SERVER_DOCUMENT_INGEST_H_
#define FOTSERVE_SRC_SERVER_DOCUMENT_INGEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "src/server/document_tokenizer.h"
#include "src/server/session_manager.h"

namespace fot {

// Acknowledgement of one step of an ingest (IngestResponse of the API).
struct IngestAck {
  int64_t document_tokens = 0;
  int64_t stream_tokens = 0;
  int64_t committed_tokens = 0;
  int64_t resume_offset = 0;  // saved bytes / tokens of the document
  int64_t pending_bytes = 0;
  bool complete = false;
};

struct IngestOpenOptions {
  std::string session;
  std::string document;
  bool resume = false;
  int64_t offset = 0;  // where the client's data starts in the document
  bool add_bos = false;
};

// One document's ingest stream: Open, then Chunk per message, then Close.
// Holds the session's WriterLock until destroyed.
class DocumentIngest {
 public:
  // NotFound (session), InvalidArgument (document name, offset), AlreadyExists
  // (document exists and !resume), FailedPrecondition (resuming a document
  // that is not the session's latest), OutOfRange (offset beyond the server's),
  // Aborted (another stream holds the session), Unavailable (shutdown).
  static absl::StatusOr<std::unique_ptr<DocumentIngest>> Open(SessionManager* manager,
                                                              const IngestOpenOptions& options);

  // The acknowledgement of the open message.
  IngestAck Ack() const;

  // Text or token ids (not both), possibly ending the document.
  absl::StatusOr<IngestAck> Chunk(std::string_view text, absl::Span<const int> token_ids,
                                  bool end_of_document);

  // The stream ended without end_of_document: saves what was appended (the
  // held-back text is dropped; the client resends it from resume_offset).
  absl::StatusOr<IngestAck> Close();

  // Starts the work that an acknowledgement need not wait for: committing
  // the windows it completed, writing them, and a checkpoint of the memory
  // when one is due. Call it after sending each acknowledgement.
  void AfterAck();

  // Waits for the committer (what AfterAck started ends first).
  ~DocumentIngest();

 private:
  // The committer: commits, writes and checkpoints whenever AfterAck asks.
  void CommitLoop();
  bool CommitterHasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) {
    return commit_wanted_ || stopping_;
  }
  // A failure of the committer (reported by the next chunk), or OK.
  absl::Status CommitterStatus();
  // Waits while the committer is more than kMaxUncommittedWindows behind.
  absl::Status WaitForCommitter();
  // Commits and writes what the committer has not yet (at the end of the
  // stream).
  absl::Status CatchUp();

  DocumentIngest(SessionManager* manager, std::shared_ptr<ManagedSession> session, WriterLock lock,
                 std::string document, DocumentState state, int64_t skip, bool add_bos,
                 bool exists);

  absl::Status Append(absl::Span<const int> ids);

  SessionManager* manager_;
  std::shared_ptr<ManagedSession> session_;
  WriterLock lock_;
  const std::string document_;
  DocumentState state_;  // as far as this stream got
  bool kind_known_;      // text vs ids decided
  int64_t skip_;         // bytes / tokens still to drop (resent data)
  bool add_bos_;
  bool exists_;  // the session has the document
  std::unique_ptr<DocumentTokenizer> text_;

  absl::Mutex commit_mu_;
  bool commit_wanted_ ABSL_GUARDED_BY(commit_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(commit_mu_) = false;
  absl::Status commit_status_ ABSL_GUARDED_BY(commit_mu_);
  std::thread committer_;  // started by the first AfterAck
  // Counts the stream in fotserve_active_streams while it lives.
  ServerMetrics::StreamScope active_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_DOCUMENT_INGEST_H_
