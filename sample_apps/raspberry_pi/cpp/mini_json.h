// mini_json.h: a small JSON reader (RFC 8259) for the bundle's manifest.json, labels.json and tokenizer.json.
//
// Written for this app (Apache-2.0, like the toolkit) so the C++ app builds with nothing but a compiler and the
// executorch libraries. It reads; it does not write. Numbers are parsed with strtod, which rounds correctly, so the
// tokenizer's piece scores are the exact doubles Python wrote (Python prints the shortest round-tripping form).
//
//   minijson::Value doc = minijson::parse_file("tokenizer.json");
//   double score = doc["model"]["pieces"][7][1].as_number();

#ifndef XLNET_EDGE_MINI_JSON_H
#define XLNET_EDGE_MINI_JSON_H

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace minijson {

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };

  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;               // UTF-8
  std::vector<Value> items;         // array items, or object values
  std::vector<std::string> keys;    // object keys, in file order (same index as items)

  bool is_null() const { return type == Type::Null; }

  // Member of an object, or nullptr when absent.
  const Value* find(const std::string& key) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == key) return &items[i];
    }
    return nullptr;
  }
  const Value& operator[](const std::string& key) const {
    const Value* found = find(key);
    if (type != Type::Object || found == nullptr) throw std::runtime_error("JSON: missing key '" + key + "'");
    return *found;
  }
  const Value& operator[](size_t index) const {
    if (type != Type::Array || index >= items.size()) throw std::runtime_error("JSON: index out of range");
    return items[index];
  }
  size_t size() const { return items.size(); }

  double as_number() const { return expect(Type::Number, "a number").number; }
  int as_int() const { return static_cast<int>(as_number()); }
  bool as_bool() const { return expect(Type::Bool, "true/false").boolean; }
  const std::string& as_string() const { return expect(Type::String, "a string").string; }

 private:
  const Value& expect(Type wanted, const char* what) const {
    if (type != wanted) throw std::runtime_error(std::string("JSON: expected ") + what);
    return *this;
  }
};

// Append one code point to a UTF-8 string.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

namespace detail {

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  Value document() {
    Value value = parse_value();
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return value;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error("bad JSON at byte " + std::to_string(pos_) + ": " + why);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  char peek() {
    skip_space();
    if (pos_ >= s_.size()) fail("unexpected end of input");
    return s_[pos_];
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  Value parse_value() {
    Value v;
    char c = peek();
    if (c == '{') {
      v.type = Value::Type::Object;
      ++pos_;
      if (peek() == '}') { ++pos_; return v; }
      while (true) {
        if (peek() != '"') fail("expected a string key");
        v.keys.push_back(parse_string());
        expect(':');
        v.items.push_back(parse_value());
        if (peek() == ',') { ++pos_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type = Value::Type::Array;
      ++pos_;
      if (peek() == ']') { ++pos_; return v; }
      while (true) {
        v.items.push_back(parse_value());
        if (peek() == ',') { ++pos_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type = Value::Type::String;
      v.string = parse_string();
      return v;
    }
    if (literal("true")) { v.type = Value::Type::Bool; v.boolean = true; return v; }
    if (literal("false")) { v.type = Value::Type::Bool; return v; }
    if (literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      const char* start = s_.c_str() + pos_;
      char* end = nullptr;
      v.type = Value::Type::Number;
      v.number = std::strtod(start, &end);
      if (end == start) fail("bad number");
      pos_ += static_cast<size_t>(end - start);
      return v;
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  bool literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(pos_, n, word) != 0) return false;
    pos_ += n;
    return true;
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("short \\u escape");
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      value <<= 4;
      if (h >= '0' && h <= '9') value |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') value |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') value |= static_cast<unsigned>(h - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return value;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }  // raw UTF-8 bytes are copied as they are
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && s_.compare(pos_, 2, "\\u") == 0) {  // a surrogate pair
            size_t saved = pos_;
            pos_ += 2;
            unsigned low = hex4();
            if (low >= 0xDC00 && low <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            else pos_ = saved;
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
  }
};

}  // namespace detail

inline Value parse(const std::string& text) { return detail::Parser(text).document(); }

inline Value parse_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return parse(text);
  } catch (const std::runtime_error& err) {
    throw std::runtime_error(path + ": " + err.what());
  }
}

}  // namespace minijson

#endif  // XLNET_EDGE_MINI_JSON_H
