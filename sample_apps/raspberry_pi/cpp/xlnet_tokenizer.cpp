// xlnet_tokenizer.cpp: see xlnet_tokenizer.h. Each method names the Python function in ../xlnet_tokenizer.py it ports.

#include "xlnet_tokenizer.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace {

// Python's _truncated_lengths: cut from the end; for pairs the shorter keeps at most budget / 2 (A on ties).
std::pair<size_t, size_t> truncated_lengths(size_t len_a, const size_t* len_b, size_t budget) {
  if (len_b == nullptr) return {std::min(len_a, budget), 0};
  size_t b = *len_b;
  if (len_a + b <= budget) return {len_a, b};
  if (len_a > b) {
    b = std::min(b, budget / 2);
    return {std::min(len_a, budget - b), b};
  }
  len_a = std::min(len_a, budget / 2);
  return {len_a, std::min(b, budget - len_a)};
}

size_t utf8_length(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

bool starts_with_at(const std::u32string& text, size_t i, const std::u32string& prefix) {
  return text.compare(i, prefix.size(), prefix) == 0;
}

// Python's str.replace: every non-overlapping occurrence, left to right.
std::u32string replace_all(const std::u32string& text, const std::u32string& from, const std::u32string& to) {
  if (from.empty()) return text;
  std::u32string out;
  size_t start = 0;
  for (size_t hit = text.find(from); hit != std::u32string::npos; hit = text.find(from, start)) {
    out.append(text, start, hit - start);
    out += to;
    start = hit + from.size();
  }
  out.append(text, start, std::u32string::npos);
  return out;
}

std::unordered_set<char32_t> code_set(const minijson::Value& ranges) {
  std::unordered_set<char32_t> out;
  for (const auto& r : ranges.items) {
    for (auto c = static_cast<char32_t>(r[0].as_int()); c <= static_cast<char32_t>(r[1].as_int()); ++c) out.insert(c);
  }
  return out;
}

// A map whose keys are single characters ({"é": "e", ...}); longer keys are skipped (never looked up).
std::unordered_map<char32_t, std::u32string> char_map(const minijson::Value& object) {
  std::unordered_map<char32_t, std::u32string> out;
  for (size_t i = 0; i < object.keys.size(); ++i) {
    std::u32string key = utf8_to_u32(object.keys[i]);
    if (key.size() == 1) out[key[0]] = utf8_to_u32(object.items[i].as_string());
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------------------- UTF-8

std::u32string utf8_to_u32(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  // unsigned char: plain char is signed on x86 but unsigned on ARM; the bit tests below need the byte value.
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char lead = s[i];
    size_t extra;  // continuation bytes after the lead byte
    char32_t code;
    if (lead < 0x80) { extra = 0; code = lead; }
    else if ((lead >> 5) == 0x6) { extra = 1; code = lead & 0x1F; }
    else if ((lead >> 4) == 0xE) { extra = 2; code = lead & 0x0F; }
    else if ((lead >> 3) == 0x1E) { extra = 3; code = lead & 0x07; }
    else { out += U'\uFFFD'; ++i; continue; }
    bool ok = i + extra < n;
    for (size_t k = 1; ok && k <= extra; ++k) {
      ok = (s[i + k] & 0xC0) == 0x80;
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (!ok) { out += U'\uFFFD'; ++i; continue; }
    out += code;
    i += extra + 1;
  }
  return out;
}

// -------------------------------------------------------------------------------------------------- CodeRanges

CodeRanges::CodeRanges(const minijson::Value& list) {
  for (const auto& r : list.items) {
    ranges_.emplace_back(static_cast<char32_t>(r[0].as_int()), static_cast<char32_t>(r[1].as_int()));
  }
  std::sort(ranges_.begin(), ranges_.end());
}

bool CodeRanges::contains(char32_t code) const {
  // The last range starting at or before `code` (Python's bisect_right - 1).
  auto key = std::make_pair(code, std::numeric_limits<char32_t>::max());
  auto after = std::upper_bound(ranges_.begin(), ranges_.end(), key);
  if (after == ranges_.begin()) return false;
  --after;
  return after->first <= code && code <= after->second;
}

// ----------------------------------------------------------------------------------------------- XLNetTokenizer

XLNetTokenizer::XLNetTokenizer(const minijson::Value& spec) {
  const minijson::Value* format = spec.find("format");
  const minijson::Value* version = spec.find("format_version");
  if (format == nullptr || version == nullptr || format->as_string() != "xlnet-edge-tokenizer" ||
      version->as_int() != 1) {
    throw std::runtime_error("tokenizer.json is not format xlnet-edge-tokenizer version 1: re-export the bundle");
  }
  const auto& model = spec["model"];
  const auto& pieces = model["pieces"];
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::u32string piece = utf8_to_u32(pieces[i][0].as_string());
    piece_ids_[piece] = static_cast<int32_t>(i);  // a repeated piece keeps its last id, as Python's dict does
    scores_.push_back(pieces[i][1].as_number());
    max_piece_len_ = std::max(max_piece_len_, piece.size());
  }
  unk_id_ = model["unk_id"].as_int();
  unk_score_ = model["unk_score"].as_number();

  for (const auto& t : spec["special_tokens"].items) {
    specials_.push_back({utf8_to_u32(t["content"].as_string()), t["id"].as_int(), t["lstrip"].as_bool(),
                         t["rstrip"].as_bool()});
  }
  std::stable_sort(specials_.begin(), specials_.end(),
                   [](const Special& a, const Special& b) { return a.content.size() > b.content.size(); });
  const auto& ids = spec["special_ids"];
  sep_id_ = ids["sep"].as_int();
  cls_id_ = ids["cls"].as_int();
  pad_id_ = ids["pad"].as_int();

  const auto& norm = spec["normalizer"];
  for (const auto& pair : norm["replace"].items) {
    replace_.emplace_back(utf8_to_u32(pair[0].as_string()), utf8_to_u32(pair[1].as_string()));
  }
  decompose_ = char_map(norm["decompose"]["map"]);
  const auto& charsmap = norm["charsmap"];
  charsmap_ = char_map(charsmap["map"]);
  extend_ = CodeRanges(charsmap["grapheme_extend"]);
  control_ = CodeRanges(charsmap["grapheme_control"]);
  prepend_ = code_set(charsmap["grapheme_prepend"]);
  whole_max_bytes_ = static_cast<size_t>(charsmap["whole_grapheme_max_utf8_bytes"].as_int());
  whitespace_ = code_set(norm["whitespace"]);

  std::u32string metaspace = utf8_to_u32(spec["pre_tokenizer"]["metaspace"].as_string());
  if (metaspace.size() != 1) throw std::runtime_error("tokenizer.json: the metaspace must be one character");
  metaspace_ = metaspace[0];
  const auto& types = spec["template"]["type_ids"];
  type_a_ = types["a"].as_int();
  type_b_ = types["b"].as_int();
  type_cls_ = types["cls"].as_int();
  type_pad_ = types["pad"].as_int();
  seq_len_ = spec["sequence_length"].as_int();
  // Length buckets: the model has one method per length; a text runs at the shortest that holds it.
  const minijson::Value* lengths = spec.find("sequence_lengths");
  if (lengths != nullptr && !lengths->is_null()) {
    for (const auto& n : lengths->items) lengths_.push_back(n.as_int());
  }
  if (lengths_.empty()) lengths_.push_back(seq_len_);
  std::sort(lengths_.begin(), lengths_.end());
}

XLNetTokenizer XLNetTokenizer::load(const std::string& path) { return XLNetTokenizer(minijson::parse_file(path)); }

// Python: text_ids + _split_specials. Cut the raw text at every special token (leftmost match, longest first).
std::vector<int32_t> XLNetTokenizer::text_ids(const std::u32string& text) const {
  std::vector<int32_t> ids;
  auto add_segment = [&](const std::u32string& segment) {
    if (segment.empty()) return;
    for (const auto& word : split_words(normalize(segment))) {
      for (const auto& part : metaspace_parts(word)) viterbi(part, ids);
    }
  };
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const Special* hit = nullptr;
    for (const auto& special : specials_) {
      if (starts_with_at(text, i, special.content)) { hit = &special; break; }
    }
    if (hit == nullptr) { ++i; continue; }
    size_t cut = i;
    if (hit->lstrip) {
      while (cut > start && whitespace_.count(text[cut - 1])) --cut;
    }
    add_segment(text.substr(start, cut - start));
    ids.push_back(hit->id);
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < text.size() && whitespace_.count(text[i])) ++i;
    }
    start = i;
  }
  add_segment(text.substr(start));
  return ids;
}

// Python: _normalize. Replacements, per-character decomposition, then the charsmap per grapheme.
std::u32string XLNetTokenizer::normalize(std::u32string text) const {
  for (const auto& [from, to] : replace_) text = replace_all(text, from, to);
  std::u32string decomposed;
  for (char32_t c : text) {
    auto found = decompose_.find(c);
    if (found == decompose_.end()) decomposed += c;
    else decomposed += found->second;
  }
  std::u32string out;
  for (size_t i = 0; i < decomposed.size();) {
    size_t j = grapheme_end(decomposed, i);
    size_t bytes = 0;
    for (size_t k = i; k < j; ++k) bytes += utf8_length(decomposed[k]);
    auto whole = charsmap_.find(decomposed[i]);
    if (bytes <= whole_max_bytes_ && whole != charsmap_.end()) {
      out += whole->second;  // the whole short grapheme takes its first character's rule
    } else {
      for (size_t k = i; k < j; ++k) {
        auto rule = charsmap_.find(decomposed[k]);
        if (rule == charsmap_.end()) out += decomposed[k];
        else out += rule->second;
      }
    }
    i = j;
  }
  return out;
}

// Python: _grapheme_end (enough of UAX #29 for the charsmap rule).
size_t XLNetTokenizer::grapheme_end(const std::u32string& text, size_t i) const {
  if (text[i] == U'\r') return (i + 1 < text.size() && text[i + 1] == U'\n') ? i + 2 : i + 1;
  if (breaks_before(text[i])) return i + 1;
  size_t j = i + 1;
  while (prepend_.count(text[j - 1]) && j < text.size() && !breaks_before(text[j])) ++j;
  while (j < text.size() && extend_.contains(text[j])) ++j;
  return j;
}

bool XLNetTokenizer::breaks_before(char32_t c) const { return c == U'\r' || c == U'\n' || control_.contains(c); }

// Python: _split_words. Split on the bundle's whitespace set, dropping empty words.
std::vector<std::u32string> XLNetTokenizer::split_words(const std::u32string& text) const {
  std::vector<std::u32string> words;
  std::u32string current;
  for (char32_t c : text) {
    if (whitespace_.count(c)) {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

// Python: _metaspace_parts. Prefix the metaspace unless present, then split before every further metaspace.
std::vector<std::u32string> XLNetTokenizer::metaspace_parts(std::u32string word) const {
  if (word.empty() || word[0] != metaspace_) word.insert(word.begin(), metaspace_);
  std::vector<std::u32string> parts;
  size_t start = 0;
  for (size_t k = 1; k < word.size(); ++k) {
    if (word[k] == metaspace_) {
      parts.push_back(word.substr(start, k - start));
      start = k;
    }
  }
  parts.push_back(word.substr(start));
  return parts;
}

// Python: _viterbi. Best-scoring segmentation (ties: first found); unknown characters fuse into one unk.
void XLNetTokenizer::viterbi(const std::u32string& text, std::vector<int32_t>& out) const {
  const size_t n = text.size();
  std::vector<double> best(n + 1, -std::numeric_limits<double>::infinity());
  std::vector<size_t> back_start(n + 1, 0);
  std::vector<int32_t> back_id(n + 1, -1);  // -1: no piece ends here yet
  best[0] = 0.0;
  for (size_t start = 0; start < n; ++start) {
    bool has_single = false;
    for (size_t end = start + 1; end <= std::min(n, start + max_piece_len_); ++end) {
      auto found = piece_ids_.find(text.substr(start, end - start));
      if (found == piece_ids_.end()) continue;
      double score = best[start] + scores_[found->second];
      if (back_id[end] < 0 || score > best[end]) {
        best[end] = score;
        back_start[end] = start;
        back_id[end] = found->second;
      }
      has_single = has_single || end == start + 1;
    }
    if (!has_single) {
      double score = best[start] + unk_score_;
      if (back_id[start + 1] < 0 || score > best[start + 1]) {
        best[start + 1] = score;
        back_start[start + 1] = start;
        back_id[start + 1] = unk_id_;
      }
    }
  }
  std::vector<int32_t> reversed;
  bool unk_run = false;
  for (size_t end = n; end > 0; end = back_start[end]) {
    int32_t id = back_id[end];
    if (id == unk_id_) {
      if (!unk_run) reversed.push_back(unk_id_);
      unk_run = true;
    } else {
      reversed.push_back(id);
      unk_run = false;
    }
  }
  out.insert(out.end(), reversed.rbegin(), reversed.rend());
}

// Python: encode. XLNet inputs [pad.. A <sep> (B <sep>) <cls>], left padding, types 0/1, 2 for <cls>, 3 for pad.
Encoded XLNetTokenizer::encode(const std::string& text, const std::string* pair, int seq_len) const {
  std::vector<int32_t> ids_a = text_ids(utf8_to_u32(text));
  std::vector<int32_t> ids_b;
  if (pair != nullptr) ids_b = text_ids(utf8_to_u32(*pair));
  return assemble(ids_a, pair == nullptr ? nullptr : &ids_b, static_cast<size_t>(seq_len > 0 ? seq_len : seq_len_));
}

// Python: encode_bucketed. Tokenize once, count the tokens with the specials, assemble at the bucket that holds them.
Encoded XLNetTokenizer::encode_bucketed(const std::string& text, const std::string* pair) const {
  std::vector<int32_t> ids_a = text_ids(utf8_to_u32(text));
  std::vector<int32_t> ids_b;
  if (pair != nullptr) ids_b = text_ids(utf8_to_u32(*pair));
  const size_t tokens = ids_a.size() + (pair == nullptr ? 2 : ids_b.size() + 3);
  size_t length = static_cast<size_t>(lengths_.back());
  for (int n : lengths_) {
    if (static_cast<size_t>(n) >= tokens) {
      length = static_cast<size_t>(n);
      break;
    }
  }
  return assemble(ids_a, pair == nullptr ? nullptr : &ids_b, length);
}

// Python: _assemble.
Encoded XLNetTokenizer::assemble(const std::vector<int32_t>& ids_a, const std::vector<int32_t>* ids_b,
                                 size_t length) const {
  const size_t specials = ids_b == nullptr ? 2 : 3;
  if (length < specials) throw std::runtime_error("seq_len is too short for XLNet's special tokens");
  size_t len_b = ids_b == nullptr ? 0 : ids_b->size();
  auto [n_a, n_b] = truncated_lengths(ids_a.size(), ids_b == nullptr ? nullptr : &len_b, length - specials);

  Encoded e;
  std::vector<int32_t> ids(ids_a.begin(), ids_a.begin() + static_cast<long>(n_a));
  ids.push_back(sep_id_);
  std::vector<int32_t> types(n_a + 1, type_a_);
  if (ids_b != nullptr) {
    ids.insert(ids.end(), ids_b->begin(), ids_b->begin() + static_cast<long>(n_b));
    ids.push_back(sep_id_);
    types.insert(types.end(), n_b + 1, type_b_);
  }
  ids.push_back(cls_id_);
  types.push_back(type_cls_);
  const size_t pad = length - ids.size();
  e.ids.assign(pad, pad_id_);
  e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  e.mask.assign(pad, 0);
  e.mask.insert(e.mask.end(), ids.size(), 1);
  e.types.assign(pad, type_pad_);
  e.types.insert(e.types.end(), types.begin(), types.end());
  return e;
}
