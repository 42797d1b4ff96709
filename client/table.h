// Plain-text tables for fotctl's human-readable output: a header row, a rule,
// and left-aligned text / right-aligned numbers, each column as wide as its
// widest cell (counted in UTF-8 code points, so token text lines up).
//
// Thread safety: none needed; a Table is built and printed by one thread.
#ifndef FOTSERVE_CLIENT_TABLE_H_
#define FOTSERVE_CLIENT_TABLE_H_

#include <string>
#include <vector>

namespace fot::client {

class Table {
 public:
  enum class Align { kLeft, kRight };

  // One column per header. Columns default to left alignment.
  explicit Table(std::vector<std::string> headers);

  // Right-aligns column `column` (numbers).
  Table& AlignRight(int column);

  // Appends a row; missing cells are empty, extra cells are dropped.
  void AddRow(std::vector<std::string> cells);

  bool empty() const { return rows_.empty(); }

  // The table, one line per row (header and rule first), each ending in '\n'.
  // Trailing spaces are trimmed.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// Number of UTF-8 code points in `text` (its width in a terminal, near enough).
int DisplayWidth(const std::string& text);

// `text` with control characters made visible ("\n" → "⏎", tab → "⇥", other
// control bytes → "·") and cut to at most `max_width` code points ("…" marks a
// cut), so that token text fits on one table line.
std::string Printable(const std::string& text, int max_width = 1 << 30);

// 1536 → "1.5 KiB"; below 1 KiB, "123 B".
std::string HumanBytes(long long bytes);

}  // namespace fot::client

#endif  // FOTSERVE_CLIENT_TABLE_H_
