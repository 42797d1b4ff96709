#include "client/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/table.h"

namespace fot::client {
namespace {

constexpr int kBarWidth = 24;

std::string Duration(double seconds) {
  const int64_t s = static_cast<int64_t>(std::ceil(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

}  // namespace

std::string GroupThousands(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string FormatProgress(const std::string& label, const ProgressState& s) {
  std::string line = label;
  const bool sized = s.total_bytes > 0;
  if (sized) {
    const double fraction = std::clamp(static_cast<double>(s.done_bytes) / s.total_bytes, 0.0, 1.0);
    const int filled = static_cast<int>(fraction * kBarWidth);
    absl::StrAppend(&line, " [", std::string(filled, '#'), std::string(kBarWidth - filled, '-'),
                    "] ", absl::StrFormat("%3d%%", static_cast<int>(fraction * 100)));
  }
  absl::StrAppend(&line, "  ", GroupThousands(s.tokens), " tokens");
  if (s.final ? s.seconds > 0 : s.seconds > 0.05) {
    const double rate = (s.tokens - s.start_tokens) / s.seconds;
    absl::StrAppend(&line, "  ", GroupThousands(std::llround(rate)), " tok/s");
  }
  if (!sized) absl::StrAppend(&line, "  ", HumanBytes(s.done_bytes));
  const int64_t run_bytes = s.done_bytes - s.start_bytes;
  if (s.final) {
    absl::StrAppend(&line, "  in ",
                    s.seconds < 60 ? absl::StrFormat("%.1f s", s.seconds) : Duration(s.seconds));
  } else if (sized && run_bytes > 0 && s.seconds > 0.05) {
    const int64_t left = std::max<int64_t>(s.total_bytes - s.done_bytes, 0);
    absl::StrAppend(&line, "  ETA ", Duration(s.seconds * left / run_bytes));
  }
  return line;
}

ProgressBar::ProgressBar(std::string label, int64_t total_bytes, int64_t start_bytes,
                         int64_t start_tokens, FILE* out, bool animate, bool enabled)
    : label_(std::move(label)), out_(out), animate_(animate), enabled_(enabled) {
  state_.total_bytes = total_bytes;
  state_.done_bytes = state_.start_bytes = start_bytes;
  state_.tokens = state_.start_tokens = start_tokens;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::Update(int64_t done_bytes, int64_t tokens) {
  state_.done_bytes = done_bytes;
  state_.tokens = tokens;
  if (!enabled_ || !animate_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  Draw(/*final=*/false);
}

void ProgressBar::Finish() {
  if (!enabled_) return;
  Draw(/*final=*/true);
}

void ProgressBar::Draw(bool final) {
  state_.seconds = seconds();
  state_.final = final;
  const std::string line = FormatProgress(label_, state_);
  if (animate_) {
    // Return to the line start, draw, clear what a longer earlier line left.
    std::fprintf(out_, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
  drawn_ = true;
}

}  // namespace fot::client
