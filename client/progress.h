// The ingest progress bar fotctl draws on stderr: tokens committed, tokens/s
// and, when the input's size is known, a bar, a percentage and an ETA.
//
// On a terminal the line is redrawn in place (at most ten times a second);
// otherwise (a log, a pipe) only the final line is written, so logs stay clean.
//
// Thread safety: none; one ProgressBar per ingest, used by one thread.
#ifndef FOTSERVE_CLIENT_PROGRESS_H_
#define FOTSERVE_CLIENT_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace fot::client {

struct ProgressState {
  int64_t done_bytes = 0;    // input bytes the server has taken
  int64_t total_bytes = -1;  // input size; -1 when unknown (stdin)
  int64_t tokens = 0;        // tokens of the document received by the server
  double seconds = 0;        // since this run started
  int64_t start_bytes = 0;   // done_bytes when this run started (resume)
  int64_t start_tokens = 0;  // tokens when this run started (resume)
  bool final = false;        // the document is done: elapsed time, no ETA
};

// One line, e.g.
//   "notes.txt [##########----------]  50%  12,345 tokens  3,210 tok/s  ETA 0:04"
//   "notes.txt [####################] 100%  24,690 tokens  3,302 tok/s  in 7.5 s"
//   "stdin  12,345 tokens  3,210 tok/s  1.2 MiB"
std::string FormatProgress(const std::string& label, const ProgressState& state);

// 12345 → "12,345".
std::string GroupThousands(int64_t n);

class ProgressBar {
 public:
  // `out` is usually stderr; `animate` redraws the line in place (pass
  // isatty(fileno(out))). `enabled` false draws nothing at all (--quiet, --json).
  ProgressBar(std::string label, int64_t total_bytes, int64_t start_bytes, int64_t start_tokens,
              FILE* out, bool animate, bool enabled);

  // Records progress; redraws when animating and 100 ms have passed.
  void Update(int64_t done_bytes, int64_t tokens);

  // Draws the final line and ends it with a newline.
  void Finish();

  double seconds() const;

 private:
  void Draw(bool final);

  std::string label_;
  ProgressState state_;
  FILE* out_;
  bool animate_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_PROGRESS_H_
