// Evaluation documents of models/fot-dict's two tasks, in the formats of
// tools/fot_data.py (the C++ side of its dict_eval_doc / passkey_eval_doc):
//
//   dictionary  BOS, then records KEY=VALUE; (KEY 4 capitals, VALUE 4 digits,
//               no spaces). Every record symbol (A-Z, 0-9, '=', ';', '?') is a
//               single piece of the model's tokenizer, so a record is 10 tokens,
//               the query "?KEY=" 6 and the answer "VALUE;" 5.
//   passkey     BOS, filler sentences with "the pass key is 48213. remember it.
//               48213 is the pass key." at a chosen depth; the question "what
//               is the pass key? the pass key is", the answer " 48213.".
//
// Both are drawn from std::mt19937, not numpy's generator, so the documents
// are of fot_data.py's format and distribution but never its training data
// (which is numpy-drawn from seeds below 1 000 000).
//
// Used by tests/models/fot_dict_test.cc and bench/fot_dict_eval.cc.
//
// Thread safety: a DictCorpus is immutable after Create; its const methods may
// be called from any thread. The Tokenizer passed to Create must outlive it.
#ifndef FOTSERVE_TOOLS_DICT_CORPUS_H_
#define FOTSERVE_TOOLS_DICT_CORPUS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "src/tokenizer/tokenizer.h"

namespace fot {

inline constexpr int kDictRecordTokens = 10;  // KEY=VALUE;
inline constexpr int kDictQueryTokens = 6;    // ?KEY=
inline constexpr int kDictAnswerTokens = 5;   // VALUE;

struct DictRecord {
  std::string key, value;
  int64_t position;  // of its first token in the document
};

struct PasskeyDocument {
  std::vector<int> tokens;    // BOS + filler with the passkey sentence inside
  std::vector<int> question;  // "what is the pass key? the pass key is"
  std::vector<int> answer;    // " 48213." (its '.' ends it)
  std::string passkey;        // "48213"
  int64_t position;           // of the passkey sentence's first token in `tokens`
};

class DictCorpus {
 public:
  // InvalidArgument, naming the symbol, if a record symbol is not a single
  // piece of `tokenizer` or it has no BOS.
  static absl::StatusOr<DictCorpus> Create(const Tokenizer* tokenizer);

  // Token ids of a text made only of record symbols, one per character.
  // Requires every character to be a record symbol.
  std::vector<int> Tokens(std::string_view text) const;

  // BOS followed by `records` records with distinct keys, drawn from
  // std::mt19937(seed): per record 4 letters then 4 digits (`rng() % 26`,
  // `rng() % 10`), a repeated key being drawn again. Appends the records,
  // with their positions, to *out.
  //
  // With `window` = 0 the records follow each other back to back (the stream
  // layout), so some straddle a boundary of the model's windows of W tokens;
  // such a record's value lands in a window that never saw its key, and no
  // model under DESIGN.md §1 can answer it from memory. With `window` = W the
  // layout is window-aligned: a record that would straddle a multiple of W
  // starts there instead, the gap filled with filler sentences from their own
  // generator, so both layouts of one seed hold the same records.
  std::vector<int> Dictionary(int64_t records, uint32_t seed, std::vector<DictRecord>* out,
                              int window = 0) const;

  // The fewest records (at least 1) that make Dictionary(records, seed, out,
  // window) at least `min_tokens` tokens long, whatever the seed.
  static int64_t RecordsToFill(int64_t min_tokens, int window);

  std::vector<int> Query(const DictRecord& record) const { return Tokens("?" + record.key + "="); }
  std::vector<int> Answer(const DictRecord& record) const { return Tokens(record.value + ";"); }

  // passkey_eval_doc of tools/fot_data.py with depth given: a document that,
  // with the question appended, is mem_tokens + last_context tokens long, so
  // exactly its first mem_tokens tokens lie outside the last window; the
  // passkey sentence starts at 1 + depth * (mem_tokens - sentence - 1). The
  // passkey (5 digits) and the filler come from std::mt19937(seed).
  // InvalidArgument if mem_tokens is too small to hold the sentence or depth
  // lies outside [0, 1].
  absl::StatusOr<PasskeyDocument> Passkey(int64_t mem_tokens, int last_context, double depth,
                                          uint32_t seed) const;

 private:
  explicit DictCorpus(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}

  const Tokenizer* tokenizer_;
  std::array<int, 128> symbol_ids_;  // by ASCII code; -1: not a record symbol
};

}  // namespace fot

#endif  // FOTSERVE_TOOLS_DICT_CORPUS_H_
