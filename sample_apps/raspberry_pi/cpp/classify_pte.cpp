// classify_pte: classify texts with a bundle's ExecuTorch .pte (XNNPACK), tokenizing in C++ exactly like the host.
//
//   classify_pte [--json] [--all-cores] BUNDLE MODEL [TEXT ...]      (no TEXT: one text per line from stdin)
//   classify_pte --self-test BUNDLE [MODEL ...]                        (replay the bundle's golden inputs)
//
// BUNDLE is the folder an export wrote (manifest.json, labels.json, tokenizer.json, models/). MODEL is a .pte path,
// a path inside BUNDLE (models/pte-int8-dynamic.pte) or an artifact name (pte-int8-dynamic). The model inputs are
// built as the manifest's record for that artifact declares them: input_ids int32, then attention_mask int32 OR
// mask_bias float32 (0 on tokens, -mask_value on padding), then token_type_ids int32 for pair tasks.
//
// Length buckets: a program exported with several lengths has one method per length (forward_16, forward_32, ...),
// listed with its input specs in the manifest record's "methods". Every method is loaded and checked against its
// specs; each text runs in the method of the shortest length that holds all its tokens (specials included), and a
// text longer than the longest is cut to it. A record without "methods" describes a program with one method.
//
// For each text it prints the label, the softmax scores, the method it ran in and the inference latency (one
// warm-up inference per method runs first, so these are steady-state figures). --json prints one JSON document
// instead (with each text's "sequence_length" bucket). By default ExecuTorch runs on one thread, which is what the
// toolkit's latency budgets are written for; --all-cores uses its thread pool.
//
// Before loading the model it checks the manifest's record of it: the record must say "valid": true, its "file" must
// stay inside BUNDLE (no absolute path, no ".." or symlink leading out), and the file's SHA-256 (sha256.h) must equal
// the record's "sha256". The program is then loaded from exactly the bytes that were hashed.
//
// --self-test replays BUNDLE/selftest.json (checked against the manifest's "selftest" sha256 first): each golden text
// must tokenize to the golden ids (at the length bucket the app picks for it), and each valid .pte (or each MODEL
// given) must give the expected logits, each text run in the method of its bucket, computed on the export host with
// ExecuTorch, within the tolerance written beside them (float models 1e-4, int8 models a few quantization steps, as
// the toolkit's emulator check). It prints every figure with the tolerance used and
// "self-test: PASS" (exit 0) or "self-test: FAIL" (exit 1); an unusable bundle exits 2.
//
// Built like toolkit/runner/pte_runner.cpp, against the executorch wheel's shared libraries: see build.sh.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/extension/threadpool/threadpool_guard.h>

#include "mini_json.h"
#include "sha256.h"
#include "xlnet_tokenizer.h"

using executorch::aten::ScalarType;
using executorch::extension::BufferDataLoader;
using executorch::extension::from_blob;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::extension::threadpool::NoThreadPoolGuard;
using executorch::runtime::Error;
using executorch::runtime::EValue;

namespace {

struct InputSpec {
  std::string name;   // input_ids | attention_mask | mask_bias | token_type_ids
  std::string dtype;  // int32 | float32
  std::vector<executorch::aten::SizesType> shape;
};

// One method of the program: what the manifest says it takes (one per length bucket).
struct MethodSpec {
  std::string name;  // forward_<length>; "" until resolved, for a record without "methods"
  int length = 0;    // sequence_length: every input is [1, length]
  std::vector<InputSpec> specs;
};

struct Result {
  std::string text;
  int label_id = 0;
  std::vector<float> logits, scores;
  int tokens = 0;
  int sequence_length = 0;  // the length bucket the text ran in
  std::string method;       // the program method that ran it
  double tokenize_ms = 0.0, inference_ms = 0.0;
};

bool is_file(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

bool is_dir(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

std::string basename_of(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

minijson::Value read_bundle_json(const std::string& bundle, const std::string& name) {
  std::string path = bundle + "/" + name;
  if (!is_file(path)) throw std::runtime_error(path + " is missing: " + bundle + " is not a complete bundle");
  return minijson::parse_file(path);
}

// The manifest record of MODEL: matched by artifact name, by its file inside the bundle, or by file name.
const minijson::Value& find_artifact(const minijson::Value& manifest, const std::string& model) {
  std::string listed;
  for (const auto& record : manifest["artifacts"].items) {
    const std::string& name = record["name"].as_string();
    const std::string& file = record["file"].as_string();
    if (model == name || model == file || basename_of(model) == basename_of(file)) return record;
    listed += (listed.empty() ? "" : ", ") + name;
  }
  throw std::runtime_error("'" + model + "' is not an artifact of this bundle's manifest.json; it has: " +
                           (listed.empty() ? "none" : listed));
}

// PATH made absolute, with "." and ".." applied and its symlinks followed, like Python's Path.resolve(): a part that
// does not exist is kept as it is, and so is everything after a symlink loop. Unlike realpath(3) it never fails on a path that exists only in part, so a
// bundle folder and a file in it are always resolved alike and can be compared.
std::string resolve_path(const std::string& path) {
  std::vector<std::string> done, todo;  // todo: the parts still to walk, the next one last
  auto add = [&todo](const std::string& more) {
    std::vector<std::string> parts;
    for (size_t start = 0; start <= more.size();) {
      size_t end = more.find('/', start);
      if (end == std::string::npos) end = more.size();
      parts.push_back(more.substr(start, end - start));
      start = end + 1;
    }
    todo.insert(todo.end(), parts.rbegin(), parts.rend());
  };
  add(path);
  if (path.empty() || path[0] != '/') {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) != nullptr) add(cwd);
  }
  auto joined = [&done]() {
    std::string out;
    for (const std::string& part : done) out += "/" + part;
    return out.empty() ? std::string("/") : out;
  };
  for (int links = 0; !todo.empty();) {
    std::string part = todo.back();
    todo.pop_back();
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    done.push_back(part);
    char target[PATH_MAX];
    ssize_t size = readlink(joined().c_str(), target, sizeof target - 1);
    if (size <= 0) continue;  // not a symlink, or not there
    if (++links > 40) {
      // A symlink loop: like Python's non-strict resolve, keep the rest as written. Under qemu -L this happens
      // when the emulated root links /tmp back to /tmp and the bundle lives under /tmp; the bundle folder and
      // the file then meet the same loop and still compare alike (and opening a truly looping file fails).
      while (!todo.empty()) {
        std::string rest = todo.back();
        todo.pop_back();
        if (rest == "..") {
          if (!done.empty()) done.pop_back();
        } else if (!rest.empty() && rest != ".") {
          done.push_back(rest);
        }
      }
      break;
    }
    done.pop_back();
    if (target[0] == '/') done.clear();
    add(std::string(target, static_cast<size_t>(size)));
  }
  return joined();
}

// BUNDLE/FILE for the record's "file", refused when it is absolute or leads out of the bundle folder (".." past
// the folder, or a symlink resolving outside it): a manifest may only name files inside its bundle.
std::string path_in_bundle(const std::string& bundle, const minijson::Value& record) {
  const minijson::Value* field = record.find("file");
  std::string file = field != nullptr && field->type == minijson::Value::Type::String ? field->string : "";
  std::string where = bundle + "/manifest.json: artifact '" + record["name"].as_string() + "' has \"file\": \"" +
                      file + "\"";
  const std::string rule = "; refusing to load it (a manifest may only name files inside its bundle)";
  if (file.empty()) throw std::runtime_error(where + ", which is not a path inside the bundle" + rule);
  if (file[0] == '/' || file[0] == '\\') throw std::runtime_error(where + ", an absolute path" + rule);
  int depth = 0;
  for (size_t start = 0; start <= file.size();) {
    size_t end = file.find('/', start);
    if (end == std::string::npos) end = file.size();
    std::string part = file.substr(start, end - start);
    depth += part == ".." ? -1 : (part.empty() || part == ".") ? 0 : 1;
    if (depth < 0) throw std::runtime_error(where + ", which leads out of the bundle folder " + bundle + rule);
    start = end + 1;
  }
  std::string path = bundle + "/" + file, root = resolve_path(bundle), real = resolve_path(path);
  if (root != "/" && real != root && real.compare(0, root.size() + 1, root + "/") != 0) {
    throw std::runtime_error(where + ", which resolves to " + real + ", outside the bundle folder " + bundle + rule);
  }
  return path;
}

// A file's bytes in a 64-byte-aligned buffer (the program is loaded from it: its segments keep their alignment).
struct ModelBytes {
  ModelBytes() = default;
  ModelBytes(const ModelBytes&) = delete;
  ModelBytes& operator=(const ModelBytes&) = delete;
  ~ModelBytes() { std::free(data); }
  unsigned char* data = nullptr;
  size_t size = 0;
  std::string sha256;  // hex digest of data, once verified
};

// Reads PATH into BYTES and checks it against the record's "sha256"; refuses a mismatch before anything loads it.
void read_verified(const std::string& path, const minijson::Value& record, const std::string& bundle,
                   ModelBytes& bytes) {
  const minijson::Value* field = record.find("sha256");
  if (field == nullptr || field->type != minijson::Value::Type::String || field->string.empty()) {
    throw std::runtime_error(bundle + "/manifest.json: artifact '" + record["name"].as_string() +
                             "' has no \"sha256\", so " + path + " cannot be verified; refusing to load it: "
                             "re-export the bundle");
  }
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot read the model file '" + path + "'");
  bytes.size = static_cast<size_t>(in.tellg());
  bytes.data = static_cast<unsigned char*>(std::aligned_alloc(64, (bytes.size / 64 + 1) * 64));
  if (bytes.data == nullptr) throw std::runtime_error("out of memory reading '" + path + "'");
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes.data), static_cast<std::streamsize>(bytes.size))) {
    throw std::runtime_error("cannot read the model file '" + path + "'");
  }
  std::string actual = sha256_hex(bytes.data, bytes.size), expected = field->string;
  bytes.sha256 = actual;
  std::string lower = expected;
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  if (actual != lower) {
    throw std::runtime_error(path + ": sha256 " + actual + " does not match the manifest's " + expected +
                             "; the file is corrupted or was replaced — re-export the bundle");
  }
}

ScalarType scalar_type(const std::string& dtype) {
  if (dtype == "int32") return ScalarType::Int;
  if (dtype == "float32") return ScalarType::Float;
  throw std::runtime_error("input dtype '" + dtype + "' is not one this app builds (int32, float32)");
}

std::vector<InputSpec> input_specs(const minijson::Value& list) {
  std::vector<InputSpec> specs;
  for (const auto& input : list.items) {
    InputSpec spec{input["name"].as_string(), input["dtype"].as_string(), {}};
    for (const auto& size : input["shape"].items) spec.shape.push_back(size.as_int());
    specs.push_back(spec);
  }
  if (specs.empty()) throw std::runtime_error("the manifest lists no inputs for the model");
  return specs;
}

// The record's methods, shortest first: its "methods" (one per length bucket), or, for a record without them, one
// method taking its "inputs" whose name is resolved from the program.
std::vector<MethodSpec> method_specs(const minijson::Value& record) {
  std::vector<MethodSpec> methods;
  const minijson::Value* listed = record.find("methods");
  if (listed != nullptr && listed->type == minijson::Value::Type::Array && !listed->items.empty()) {
    for (const auto& m : listed->items) {
      MethodSpec method{m["name"].as_string(), m["sequence_length"].as_int(), input_specs(m["inputs"])};
      for (const InputSpec& spec : method.specs) {
        if (spec.shape.empty() || spec.shape.back() != method.length) {
          throw std::runtime_error("manifest.json: method " + method.name + " of '" + record["name"].as_string() +
                                   "' has input " + spec.name + " not of length " + std::to_string(method.length));
        }
      }
      methods.push_back(method);
    }
  } else {
    std::vector<InputSpec> specs = input_specs(record["inputs"]);
    methods.push_back({"", static_cast<int>(specs.at(0).shape.back()), specs});
  }
  std::sort(methods.begin(), methods.end(),
            [](const MethodSpec& a, const MethodSpec& b) { return a.length < b.length; });
  return methods;
}

// The name of the only method of a program (a record without "methods"); "forward" when the program has it.
std::string only_method(Module& module, const std::string& path) {
  auto names = module.method_names();
  if (!names.ok() || names->empty()) throw std::runtime_error("'" + path + "' has no method");
  if (names->count("forward") != 0) return "forward";
  if (names->size() != 1) {
    throw std::runtime_error("'" + path + "' has " + std::to_string(names->size()) + " methods but its manifest " +
                             "record lists no \"methods\": the manifest does not describe this .pte");
  }
  return *names->begin();
}

// Refuse a program whose inputs differ from what the manifest says: feeding it anyway would give garbage labels.
void check_program_inputs(Module& module, const MethodSpec& method, const std::string& path) {
  const std::vector<InputSpec>& specs = method.specs;
  auto meta = module.method_meta(method.name);
  if (!meta.ok()) throw std::runtime_error("'" + path + "' has no '" + method.name + "' method");
  if (meta->num_inputs() != specs.size()) {
    throw std::runtime_error("the program's " + method.name + " takes " + std::to_string(meta->num_inputs()) +
                             " inputs, the manifest lists " + std::to_string(specs.size()) +
                             ": the manifest does not describe this .pte");
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    auto info = meta->input_tensor_meta(i);
    bool same = info.ok() && info->scalar_type() == scalar_type(specs[i].dtype) &&
                info->sizes().size() == specs[i].shape.size();
    for (size_t d = 0; same && d < specs[i].shape.size(); ++d) same = info->sizes()[d] == specs[i].shape[d];
    if (!same) {
      throw std::runtime_error(method.name + " input " + std::to_string(i) + " does not match the manifest's " +
                               specs[i].name + " (" + specs[i].dtype + "): the manifest does not describe this .pte");
    }
  }
}

class PteClassifier {
 public:
  PteClassifier(const std::string& bundle, const std::string& model) : tokenizer_(load_tokenizer(bundle)) {
    minijson::Value manifest = read_bundle_json(bundle, "manifest.json");
    for (const auto& label : read_bundle_json(bundle, "labels.json").items) labels_.push_back(label.as_string());
    const minijson::Value* mask_value = manifest["student"]["config"].find("mask_value");
    mask_value_ = mask_value != nullptr ? static_cast<float>(mask_value->as_number()) : 30.0f;

    const minijson::Value& record = find_artifact(manifest, model);
    name_ = record["name"].as_string();
    if (record["format"].as_string() != "pte") {
      throw std::runtime_error(name_ + " is a " + record["format"].as_string() +
                               " model; this app runs .pte (use ../classify.py for .tflite)");
    }
    const minijson::Value* valid = record.find("valid");
    bool is_bool = valid != nullptr && valid->type == minijson::Value::Type::Bool;
    if (!is_bool || !valid->boolean) {
      throw std::runtime_error(bundle + "/manifest.json: artifact '" + name_ + "' is marked \"valid\": " +
                               (is_bool ? "false" : "(missing)") +
                               " (it failed the export's checks; see the bundle's report.md); refusing to load it: "
                               "pick a valid artifact or re-export the bundle");
    }
    std::string in_bundle = path_in_bundle(bundle, record);  // checked even when MODEL is a path of its own
    path_ = is_file(model) ? model : in_bundle;
    if (!is_file(path_)) throw std::runtime_error("the model file '" + path_ + "' is missing");
    read_verified(path_, record, bundle, model_bytes_);
    methods_ = method_specs(record);
    std::vector<int> lengths;
    for (const MethodSpec& method : methods_) lengths.push_back(method.length);
    if (tokenizer_.sequence_lengths() != lengths) {
      throw std::runtime_error("tokenizer.json is for lengths " + list_text(tokenizer_.sequence_lengths()) + " but " +
                               name_ + " takes " + list_text(lengths) +
                               " tokens: the bundle mixes files from different exports");
    }

    // From the verified bytes, not the path: the file cannot be swapped between the check and the load.
    module_ = std::make_unique<Module>(std::make_unique<BufferDataLoader>(model_bytes_.data, model_bytes_.size));
    if (module_->load() != Error::Ok) {
      throw std::runtime_error("cannot load '" + path_ + "' as an ExecuTorch program: corrupted, or written by an "
                               "executorch version other than the one this app was built against");
    }
    for (MethodSpec& method : methods_) {
      if (method.name.empty()) method.name = only_method(*module_, path_);
      check_program_inputs(*module_, method, path_);
      if (module_->load_method(method.name) != Error::Ok) {
        throw std::runtime_error("cannot prepare '" + method.name + "': a missing operator means a kernel library "
                                 "was not linked");
      }
    }
    for (const MethodSpec& method : methods_) {
      logits(tokenizer_.encode("", nullptr, method.length));  // warm-up: XNNPACK sets itself up on the first execute
    }
  }

  const std::string& name() const { return name_; }
  const std::vector<std::string>& labels() const { return labels_; }
  const std::string& sha256() const { return model_bytes_.sha256; }  // of the bytes loaded (checked)

  // The logits of one tokenized input, from the method of its length (what the self-test compares with the golden
  // outputs).
  std::vector<float> run(const Encoded& encoded) { return logits(encoded); }
  // The program method that runs an encoded text (forward_<its length>).
  const std::string& method_name(const Encoded& encoded) const { return method_for(encoded).name; }

  Result classify(const std::string& text) {
    using clock = std::chrono::steady_clock;
    Result r;
    r.text = text;
    auto started = clock::now();
    Encoded encoded = tokenizer_.encode_bucketed(text);  // the shortest length bucket that holds the text
    auto tokenized = clock::now();
    r.logits = logits(encoded);
    r.sequence_length = static_cast<int>(encoded.ids.size());
    r.method = method_for(encoded).name;
    auto finished = clock::now();
    r.tokenize_ms = std::chrono::duration<double, std::milli>(tokenized - started).count();
    r.inference_ms = std::chrono::duration<double, std::milli>(finished - tokenized).count();
    if (r.logits.size() != labels_.size()) {
      throw std::runtime_error("labels.json has " + std::to_string(labels_.size()) + " labels but the model gives " +
                               std::to_string(r.logits.size()) + " scores");
    }
    for (int32_t m : encoded.mask) r.tokens += m;
    float top = r.logits[0], total = 0.0f;
    for (size_t c = 0; c < r.logits.size(); ++c) {
      if (r.logits[c] > top) { top = r.logits[c]; r.label_id = static_cast<int>(c); }
    }
    for (float v : r.logits) { r.scores.push_back(std::exp(v - top)); total += r.scores.back(); }
    for (float& s : r.scores) s /= total;
    return r;
  }

 private:
  static XLNetTokenizer load_tokenizer(const std::string& bundle) {
    if (!is_dir(bundle)) {
      throw std::runtime_error("no bundle folder at '" + bundle + "': pass the folder an export wrote");
    }
    return XLNetTokenizer(read_bundle_json(bundle, "tokenizer.json"));
  }

  static std::string list_text(const std::vector<int>& values) {
    std::string out = "[";
    for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
    return out + "]";
  }

  // The method that takes the encoded text's length.
  const MethodSpec& method_for(const Encoded& encoded) const {
    for (const MethodSpec& method : methods_) {
      if (static_cast<size_t>(method.length) == encoded.ids.size()) return method;
    }
    std::vector<int> lengths;
    for (const MethodSpec& method : methods_) lengths.push_back(method.length);
    throw std::runtime_error(name_ + " has no method taking " + std::to_string(encoded.ids.size()) + " tokens " +
                             "(lengths: " + list_text(lengths) + ")");
  }

  // One forward pass of the method of the input's length; the inputs are built in its manifest order and dtypes.
  std::vector<float> logits(const Encoded& encoded) {
    const MethodSpec& method = method_for(encoded);
    const std::vector<InputSpec>& specs = method.specs;
    std::vector<std::vector<int32_t>> int_inputs;
    std::vector<std::vector<float>> float_inputs;
    int_inputs.reserve(specs.size());  // no reallocation: the tensors below point into these vectors
    float_inputs.reserve(specs.size());
    std::vector<TensorPtr> tensors;
    std::vector<EValue> inputs;
    for (const InputSpec& spec : specs) {
      if (spec.name == "input_ids") int_inputs.push_back(encoded.ids);
      else if (spec.name == "attention_mask") int_inputs.push_back(encoded.mask);
      else if (spec.name == "token_type_ids") int_inputs.push_back(encoded.types);
      else if (spec.name == "mask_bias") {
        std::vector<float> bias;
        for (int32_t m : encoded.mask) bias.push_back((1.0f - static_cast<float>(m)) * -mask_value_);
        float_inputs.push_back(std::move(bias));
      } else {
        throw std::runtime_error("the model wants an input named '" + spec.name + "', which this app cannot build");
      }
      bool is_float = spec.name == "mask_bias";
      if (scalar_type(spec.dtype) != (is_float ? ScalarType::Float : ScalarType::Int)) {
        throw std::runtime_error("the manifest declares " + spec.name + " as " + spec.dtype + ", which this app does "
                                 "not build (int32 ids/masks/types, float32 mask_bias)");
      }
      void* data = is_float ? static_cast<void*>(float_inputs.back().data()) : int_inputs.back().data();
      tensors.push_back(from_blob(data, spec.shape, scalar_type(spec.dtype)));
      inputs.emplace_back(tensors.back());
    }
    auto result = module_->execute(method.name, inputs);
    if (!result.ok() || result->empty() || !result->at(0).isTensor()) {
      throw std::runtime_error(method.name + " failed (" + executorch::runtime::to_string(result.error()) + ")");
    }
    const auto& out = result->at(0).toTensor();
    if (out.scalar_type() != ScalarType::Float) throw std::runtime_error("output 0 is not float32 logits");
    const float* values = out.const_data_ptr<float>();
    return std::vector<float>(values, values + out.numel());
  }

  XLNetTokenizer tokenizer_;
  std::vector<std::string> labels_;
  float mask_value_ = 30.0f;
  std::string name_, path_;
  std::vector<MethodSpec> methods_;  // shortest first
  ModelBytes model_bytes_;  // the program's bytes: declared before module_, so they outlive it
  std::unique_ptr<Module> module_;
};

// A JSON string literal: quotes, backslashes and control characters escaped; other UTF-8 bytes kept as they are.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

void print_json(const PteClassifier& app, const std::vector<Result>& results) {
  const auto& labels = app.labels();
  std::printf("{\"model\": %s, \"runtime\": \"executorch\", \"results\": [", json_string(app.name()).c_str());
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::printf("%s\n {\"text\": %s, \"label\": %s, \"label_id\": %d, \"scores\": {", i ? "," : "",
                json_string(r.text).c_str(), json_string(labels[r.label_id]).c_str(), r.label_id);
    for (size_t c = 0; c < r.scores.size(); ++c) {
      std::printf("%s%s: %.9g", c ? ", " : "", json_string(labels[c]).c_str(), r.scores[c]);
    }
    std::printf("}, \"logits\": [");
    for (size_t c = 0; c < r.logits.size(); ++c) std::printf("%s%.9g", c ? ", " : "", r.logits[c]);
    std::printf("], \"tokens\": %d, \"sequence_length\": %d, \"method\": %s, \"tokenize_ms\": %.4f, "
                "\"inference_ms\": %.4f}", r.tokens, r.sequence_length, json_string(r.method).c_str(), r.tokenize_ms,
                r.inference_ms);
  }
  std::printf("\n]}\n");
}

void print_lines(const PteClassifier& app, const std::vector<Result>& results, bool all_cores) {
  std::printf("# %s on executorch (XNNPACK), %s\n", app.name().c_str(), all_cores ? "all cores" : "1 thread");
  for (const Result& r : results) {
    std::printf("%-12s", app.labels()[r.label_id].c_str());
    for (size_t c = 0; c < r.scores.size(); ++c) std::printf(" %s=%.4f", app.labels()[c].c_str(), r.scores[c]);
    std::printf("  %s  %.2f ms  | %s\n", r.method.c_str(), r.inference_ms, r.text.substr(0, 60).c_str());
  }
}

// BUNDLE/selftest.json, after checking it like a model: named by the manifest's "selftest" record, inside the
// bundle, with the record's SHA-256.
minijson::Value read_selftest(const std::string& bundle, const minijson::Value& manifest) {
  const minijson::Value* entry = manifest.find("selftest");
  if (entry == nullptr || entry->type != minijson::Value::Type::Object) {
    throw std::runtime_error(bundle + "/manifest.json lists no \"selftest\" file: the bundle was exported without "
                             "golden inputs (re-export it with a current toolkit)");
  }
  const minijson::Value* file = entry->find("file");
  const minijson::Value* sha = entry->find("sha256");
  minijson::Value record = minijson::parse(
      "{\"name\": \"selftest\", \"file\": " +
      json_string(file != nullptr && file->type == minijson::Value::Type::String ? file->string : "") +
      (sha != nullptr && sha->type == minijson::Value::Type::String ? ", \"sha256\": " + json_string(sha->string) : "") +
      "}");
  std::string path = path_in_bundle(bundle, record);
  ModelBytes bytes;
  read_verified(path, record, bundle, bytes);
  minijson::Value doc = minijson::parse(std::string(reinterpret_cast<const char*>(bytes.data), bytes.size));
  const minijson::Value* format = doc.find("format");
  const minijson::Value* version = doc.find("version");
  if (format == nullptr || format->type != minijson::Value::Type::String || format->string != "xlnet-edge-selftest" ||
      version == nullptr || version->type != minijson::Value::Type::Number || version->number != 1) {
    throw std::runtime_error(path + " is not a version-1 xlnet-edge selftest file");
  }
  return doc;
}

std::vector<int32_t> int_list(const minijson::Value& list) {
  std::vector<int32_t> out;
  for (const auto& v : list.items) out.push_back(static_cast<int32_t>(v.as_number()));
  return out;
}

// --self-test: golden texts -> ids (exact), then each .pte's logits within the selftest's tolerance.
bool self_test(const std::string& bundle, std::vector<std::string> models) {
  if (!is_dir(bundle)) throw std::runtime_error("no bundle folder at '" + bundle + "': pass the folder an export wrote");
  minijson::Value manifest = read_bundle_json(bundle, "manifest.json");
  minijson::Value doc = read_selftest(bundle, manifest);
  XLNetTokenizer tokenizer(read_bundle_json(bundle, "tokenizer.json"));
  const auto& examples = doc["examples"].items;
  std::printf("# self-test of %s: %zu golden texts from selftest.json (sha256 verified)\n", bundle.c_str(),
              examples.size());
  std::vector<Encoded> encoded;
  std::vector<size_t> wrong;
  for (size_t i = 0; i < examples.size(); ++i) {
    const minijson::Value& e = examples[i];
    const minijson::Value* pair = e.find("pair");
    bool has_pair = pair != nullptr && pair->type == minijson::Value::Type::String;
    // At the length bucket the app runs it in; the golden ids are stored at the length the export host picked.
    encoded.push_back(tokenizer.encode_bucketed(e["text"].as_string(), has_pair ? &pair->string : nullptr));
    const Encoded& got = encoded.back();
    if (got.ids != int_list(e["input_ids"]) || got.mask != int_list(e["attention_mask"]) ||
        got.types != int_list(e["token_type_ids"])) {
      wrong.push_back(i);
    }
  }
  bool passed = wrong.empty();
  std::printf("tokenizer: %zu/%zu texts give the golden input_ids, attention_mask and token_type_ids (exact) -> %s\n",
              examples.size() - wrong.size(), examples.size(), passed ? "PASS" : "FAIL");
  for (size_t i : wrong) {
    std::printf("  text %zu \"%s\": tokenized differently from the export host\n", i,
                examples[i]["text"].as_string().substr(0, 50).c_str());
  }
  const minijson::Value& expected_all = doc["artifacts"];
  if (models.empty()) {
    for (const auto& record : manifest["artifacts"].items) {
      const minijson::Value* valid = record.find("valid");
      if (record["format"].as_string() == "pte" && valid != nullptr && valid->type == minijson::Value::Type::Bool &&
          valid->boolean && expected_all.find(record["name"].as_string()) != nullptr) {
        models.push_back(record["name"].as_string());
      }
    }
    if (models.empty()) std::printf("no valid .pte artifact to replay (the .tflite ones: classify.py --self-test)\n");
  }
  for (const std::string& model : models) {
    PteClassifier app(bundle, model);  // valid, inside the bundle, the manifest's sha256
    const minijson::Value* golden = expected_all.find(app.name());
    if (golden == nullptr) {
      throw std::runtime_error("selftest.json has no expected outputs for " + app.name() + ": re-export the bundle");
    }
    if ((*golden)["sha256"].as_string() != app.sha256()) {
      throw std::runtime_error("selftest.json's expected outputs for " + app.name() + " are for another file (sha256 " +
                               (*golden)["sha256"].as_string() + ", this one is " + app.sha256() +
                               "): re-export the bundle");
    }
    const auto& rows = (*golden)["logits"].items;
    double atol = (*golden)["atol"].as_number(), max_diff = 0.0;
    size_t same_labels = 0;
    bool shapes_match = rows.size() == encoded.size();
    for (size_t i = 0; shapes_match && i < encoded.size(); ++i) {
      std::vector<float> got = app.run(encoded[i]);
      if (got.size() != rows[i].size()) { shapes_match = false; break; }
      size_t got_best = 0, want_best = 0;
      for (size_t c = 0; c < got.size(); ++c) {
        double want = rows[i][c].as_number();
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[c]) - want));
        if (got[c] > got[got_best]) got_best = c;
        if (want > rows[i][want_best].as_number()) want_best = c;
      }
      same_labels += got_best == want_best;
    }
    if (!shapes_match) max_diff = INFINITY;
    std::vector<std::pair<std::string, int>> per_method;  // texts run by each method, in first-use order
    for (const Encoded& e : encoded) {
      const std::string& method = app.method_name(e);
      auto at = std::find_if(per_method.begin(), per_method.end(), [&](const auto& m) { return m.first == method; });
      if (at == per_method.end()) per_method.emplace_back(method, 1);
      else ++at->second;
    }
    bool ok = max_diff <= atol;
    passed = passed && ok;
    std::printf("%s on executorch (XNNPACK): max |logit diff| %.3g <= tolerance %.3g? %s; labels %zu/%zu as expected "
                "-> %s\n", app.name().c_str(), max_diff, atol, ok ? "yes" : "NO", same_labels, encoded.size(),
                ok ? "PASS" : "FAIL");
    std::printf("  tolerance: %s\n", (*golden)["tolerance"].as_string().c_str());
    std::printf("  methods:");
    for (size_t m = 0; m < per_method.size(); ++m) {
      std::printf("%s %s (%d text%s)", m ? "," : "", per_method[m].first.c_str(), per_method[m].second,
                  per_method[m].second == 1 ? "" : "s");
    }
    std::printf("\n");
  }
  std::printf("self-test: %s\n", passed ? "PASS" : "FAIL");
  return passed;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, all_cores = false, selftest = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--json") json = true;
    else if (arg == "--all-cores") all_cores = true;
    else if (arg == "--self-test") selftest = true;
    else positional.push_back(arg);
  }
  if (selftest) {
    if (positional.empty()) {
      std::fprintf(stderr, "usage: %s --self-test BUNDLE [MODEL ...]\n", argv[0]);
      return 64;
    }
    std::unique_ptr<NoThreadPoolGuard> single_thread;
    if (!all_cores) single_thread = std::make_unique<NoThreadPoolGuard>();
    try {
      return self_test(positional[0], std::vector<std::string>(positional.begin() + 1, positional.end())) ? 0 : 1;
    } catch (const std::exception& err) {
      std::fflush(stdout);
      std::fprintf(stderr, "classify_pte: error: %s\n", err.what());
      return 2;
    }
  }
  if (positional.size() < 2) {
    std::fprintf(stderr, "usage: %s [--json] [--all-cores] BUNDLE MODEL [TEXT ...]\n"
                 "       %s --self-test BUNDLE [MODEL ...]\n"
                 "  MODEL: a .pte path, a path inside BUNDLE, or an artifact name from manifest.json\n"
                 "  no TEXT: classify each line of stdin\n", argv[0], argv[0]);
    return 64;
  }
  std::unique_ptr<NoThreadPoolGuard> single_thread;
  if (!all_cores) single_thread = std::make_unique<NoThreadPoolGuard>();
  try {
    PteClassifier app(positional[0], positional[1]);
    std::vector<std::string> texts(positional.begin() + 2, positional.end());
    if (texts.empty()) {
      for (std::string line; std::getline(std::cin, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        texts.push_back(line);
      }
    }
    std::vector<Result> results;
    for (const auto& text : texts) results.push_back(app.classify(text));
    if (json) print_json(app, results);
    else print_lines(app, results, all_cores);
  } catch (const std::exception& err) {
    std::fprintf(stderr, "classify_pte: error: %s\n", err.what());
    return 2;
  }
  return 0;
}
