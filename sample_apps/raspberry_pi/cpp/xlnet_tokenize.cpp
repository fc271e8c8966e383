// xlnet_tokenize: print the C++ tokenizer's model inputs for a list of texts (the tokenizer parity check).
//
//   xlnet_tokenize TOKENIZER.json CASES.json [SEQ_LEN | buckets]
//
// SEQ_LEN: encode every case at that length (default: tokenizer.json's sequence_length). "buckets": encode each case
// as classify_pte does, at the shortest of tokenizer.json's sequence_lengths that holds it (encode_bucketed).
// CASES.json is a JSON list; each item is a text, or a [text, pair] list for a text pair. Texts travel as JSON
// (not as lines) so newlines, tabs and other awkward characters arrive intact. For each case one line is printed:
//   ids<TAB>attention_mask<TAB>token_type_ids      (each a space-separated list)

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "xlnet_tokenizer.h"

namespace {

void print_list(const std::vector<int32_t>& values, char end) {
  for (size_t i = 0; i < values.size(); ++i) std::printf(i ? " %d" : "%d", values[i]);
  std::putchar(end);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s TOKENIZER.json CASES.json [SEQ_LEN | buckets]\n", argv[0]);
    return 64;
  }
  try {
    XLNetTokenizer tokenizer = XLNetTokenizer::load(argv[1]);
    bool bucketed = argc == 4 && std::string(argv[3]) == "buckets";
    int seq_len = argc == 4 && !bucketed ? std::stoi(argv[3]) : 0;
    minijson::Value cases = minijson::parse_file(argv[2]);
    for (const auto& item : cases.items) {
      bool is_pair = item.type == minijson::Value::Type::Array;
      const std::string& text = is_pair ? item[0].as_string() : item.as_string();
      const std::string* pair = is_pair && !item[1].is_null() ? &item[1].as_string() : nullptr;
      Encoded e = bucketed ? tokenizer.encode_bucketed(text, pair) : tokenizer.encode(text, pair, seq_len);
      print_list(e.ids, '\t');
      print_list(e.mask, '\t');
      print_list(e.types, '\n');
    }
  } catch (const std::exception& err) {
    std::fprintf(stderr, "xlnet_tokenize: error: %s\n", err.what());
    return 2;
  }
  return 0;
}
