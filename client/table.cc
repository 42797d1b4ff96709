#include "client/table.h"

#include <algorithm>
#include <cstdio>

namespace fot::client {
namespace {

// Length of the UTF-8 sequence that starts with byte `lead` (1 for stray bytes).
int SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xe) return 3;
  if ((lead >> 3) == 0x1e) return 4;
  return 1;
}

}  // namespace

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), align_(headers_.size(), Align::kLeft) {}

Table& Table::AlignRight(int column) {
  if (column >= 0 && column < static_cast<int>(align_.size())) align_[column] = Align::kRight;
  return *this;
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<int> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = DisplayWidth(headers_[c]);
    for (const auto& row : rows_) width[c] = std::max(width[c], DisplayWidth(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) out += "  ";
      const std::string pad(width[c] - DisplayWidth(cells[c]), ' ');
      out += align_[c] == Align::kRight ? pad + cells[c] : cells[c] + pad;
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(headers_);
  std::vector<std::string> rule;
  for (int w : width) rule.push_back(std::string(w, '-'));
  out += line(rule);
  for (const auto& row : rows_) out += line(row);
  return out;
}

int DisplayWidth(const std::string& text) {
  int n = 0;
  for (unsigned char c : text) n += (c & 0xc0) != 0x80;
  return n;
}

std::string Printable(const std::string& text, int max_width) {
  std::string out;
  int width = 0;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = text[i];
    const int len = std::min<int>(SequenceLength(c), text.size() - i);
    if (width == max_width) {
      // Room for the mark only if something is left to cut.
      if (!out.empty()) {
        size_t back = out.size() - 1;
        while (back > 0 && (static_cast<unsigned char>(out[back]) & 0xc0) == 0x80) --back;
        out.erase(back);
      }
      return out + "…";
    }
    if (c == '\n') {
      out += "⏎";
    } else if (c == '\t') {
      out += "⇥";
    } else if (c < 0x20 || c == 0x7f) {
      out += "·";
    } else {
      out.append(text, i, len);
    }
    ++width;
    i += len;
  }
  return out;
}

std::string HumanBytes(long long bytes) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = bytes / 1024.0;
  int unit = 0;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  return buffer;
}

}  // namespace fot::client
