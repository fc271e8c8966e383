// xlnet_tokenizer.h: the XLNet tokenizer in C++, reading the bundle's tokenizer.json.
//
// A line-by-line port of ../xlnet_tokenizer.py (itself parity-tested against the host encoder): the same special-token
// splitting, normalisation tables, Unigram Viterbi, XLNet template ([pad.. A <sep> (B <sep>) <cls>]), truncation and
// left padding. Text is handled as Unicode code points (std::u32string), as Python's str is; every rule comes from
// tokenizer.json, so nothing depends on the C++ library's locale or Unicode tables.
//
//   XLNetTokenizer tok = XLNetTokenizer::load("bundle/tokenizer.json");
//   Encoded e = tok.encode("a gorgeous , witty , seductive movie .");   // e.ids, e.mask, e.types
//   Encoded b = tok.encode_bucketed("dull");    // at the shortest length bucket that holds it: b.ids.size() == 16

#ifndef XLNET_EDGE_XLNET_TOKENIZER_H
#define XLNET_EDGE_XLNET_TOKENIZER_H

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mini_json.h"

struct Encoded {
  std::vector<int32_t> ids;    // input_ids
  std::vector<int32_t> mask;   // attention_mask: 1 on tokens, 0 on (left) padding
  std::vector<int32_t> types;  // token_type_ids: 0 text A, 1 text B, 2 <cls>, 3 padding
};

// Sorted, non-overlapping [first, last] code point ranges, as tokenizer.json lists them.
class CodeRanges {
 public:
  CodeRanges() = default;
  explicit CodeRanges(const minijson::Value& list);
  bool contains(char32_t code) const;

 private:
  std::vector<std::pair<char32_t, char32_t>> ranges_;
};

class XLNetTokenizer {
 public:
  explicit XLNetTokenizer(const minijson::Value& spec);
  static XLNetTokenizer load(const std::string& path);

  // Model inputs of one text (and optional pair), seq_len long; seq_len <= 0 uses tokenizer.json's length.
  Encoded encode(const std::string& text, const std::string* pair = nullptr, int seq_len = 0) const;
  // Python: encode_bucketed. encode at the shortest length bucket that holds every token of the text (specials
  // included: A + 2, or A + B + 3 for a pair); a longer text is cut to the longest bucket. The length of the
  // result says which method of the model to run (forward_<length>).
  Encoded encode_bucketed(const std::string& text, const std::string* pair = nullptr) const;
  // Token ids of one text without special tokens around it.
  std::vector<int32_t> text_ids(const std::u32string& text) const;
  int sequence_length() const { return seq_len_; }  // the longest bucket
  // The length buckets (tokenizer.json "sequence_lengths", ascending; [sequence_length] when it has none).
  const std::vector<int>& sequence_lengths() const { return lengths_; }

 private:
  struct Special {
    std::u32string content;
    int32_t id;
    bool lstrip, rstrip;
  };

  std::u32string normalize(std::u32string text) const;
  size_t grapheme_end(const std::u32string& text, size_t i) const;
  bool breaks_before(char32_t c) const;
  std::vector<std::u32string> split_words(const std::u32string& text) const;
  std::vector<std::u32string> metaspace_parts(std::u32string word) const;
  void viterbi(const std::u32string& text, std::vector<int32_t>& out) const;
  // The XLNet template around ids_a (and ids_b when not null), truncated and left-padded to length.
  Encoded assemble(const std::vector<int32_t>& ids_a, const std::vector<int32_t>* ids_b, size_t length) const;

  std::unordered_map<std::u32string, int32_t> piece_ids_;
  std::vector<double> scores_;
  size_t max_piece_len_ = 0;
  int32_t unk_id_ = 0;
  double unk_score_ = 0.0;
  std::vector<Special> specials_;  // longest first
  int32_t sep_id_ = 0, cls_id_ = 0, pad_id_ = 0;
  std::vector<std::pair<std::u32string, std::u32string>> replace_;
  std::unordered_map<char32_t, std::u32string> decompose_;
  std::unordered_map<char32_t, std::u32string> charsmap_;  // only one-character rules are ever looked up
  CodeRanges extend_, control_;
  std::unordered_set<char32_t> prepend_, whitespace_;
  size_t whole_max_bytes_ = 5;
  char32_t metaspace_ = U'\u2581';
  int32_t type_a_ = 0, type_b_ = 1, type_cls_ = 2, type_pad_ = 3;
  int seq_len_ = 0;
  std::vector<int> lengths_;
};

// UTF-8 -> code points. Invalid UTF-8 bytes become U+FFFD.
std::u32string utf8_to_u32(const std::string& text);

#endif  // XLNET_EDGE_XLNET_TOKENIZER_H
