// pte_runner: run an ExecuTorch .pte program on samples from a binary file.
//
//   pte_runner MODEL.pte INPUTS.bin OUTPUTS.bin [NUM_SAMPLES [THREADS [METHOD]]]
//
// METHOD defaults to the program's only method (a program with length buckets has one per length: forward_32, ...).
// The method's inputs (count, dtypes, shapes) are read from the program itself. INPUTS.bin holds N samples
// back to back; one sample is every input tensor's raw little-endian bytes, concatenated in method-input order. For
// every sample, output 0 (float32 logits) is appended to OUTPUTS.bin as raw float32 and printed as one line.
// NUM_SAMPLES, when given, is checked against the file size: it catches inputs of the wrong dtype or shape that
// would otherwise still divide evenly into samples.
//
// Around each execute() the runner makes a marker syscall (see marker.h) so that the qemu TCG plugin
// (insn_count_plugin.c) counts guest instructions for exactly the inference. On real Linux it returns ENOSYS.
//
// One thread by default: the XNNPACK thread pool is disabled so outputs and instruction counts are repeatable and the
// figure is "one inference on one core", which is what the latency budgets are written for. THREADS > 1 sizes
// ExecuTorch's thread pool (what an app on several cores runs) for the emulator's multi-thread estimate.

#include <unistd.h>
#include <sys/syscall.h>

#include <cinttypes>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/extension/threadpool/threadpool_guard.h>

#include "marker.h"

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::extension::threadpool::NoThreadPoolGuard;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::MethodMeta;
using executorch::runtime::Tag;

// From executorch/extension/threadpool/threadpool.h, which the wheel does not ship (libexecutorch_threadpool does).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

struct InputSpec {
  ScalarType dtype;
  std::vector<executorch::aten::SizesType> sizes;
  size_t nbytes;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "pte_runner: error: %s\n", message.c_str());
  std::exit(2);
}

void marker(long phase) {
  // Deliberately ignore the result: ENOSYS on real Linux, swallowed by qemu; only the plugin cares.
  (void)syscall(XEDGE_MARKER_SYSCALL, XEDGE_MARKER_MAGIC, phase);
}

std::string describe(const InputSpec& spec) {
  std::string text = executorch::runtime::toString(spec.dtype);
  text += " [";
  for (size_t d = 0; d < spec.sizes.size(); ++d) {
    text += (d ? ", " : "") + std::to_string(spec.sizes[d]);
  }
  return text + "] = " + std::to_string(spec.nbytes) + " bytes";
}

std::vector<InputSpec> read_input_specs(const MethodMeta& meta) {
  std::vector<InputSpec> specs;
  for (size_t i = 0; i < meta.num_inputs(); ++i) {
    auto tag = meta.input_tag(i);
    if (!tag.ok() || tag.get() != Tag::Tensor) {
      fail("forward input " + std::to_string(i) + " is not a tensor; only tensor inputs are supported");
    }
    auto info = meta.input_tensor_meta(i);
    if (!info.ok()) {
      fail("cannot read the metadata of forward input " + std::to_string(i));
    }
    InputSpec spec{info->scalar_type(), {}, info->nbytes()};
    for (int32_t size : info->sizes()) {
      spec.sizes.push_back(size);
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

std::vector<char> read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail(std::string("cannot open input file '") + path + "'");
  }
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    std::fprintf(stderr, "usage: %s MODEL.pte INPUTS.bin OUTPUTS.bin [NUM_SAMPLES [THREADS [METHOD]]]\n", argv[0]);
    return 64;
  }
  const char* model_path = argv[1];
  const long threads = argc >= 6 ? std::strtol(argv[5], nullptr, 10) : 1;
  if (threads < 1 || threads > 64) {
    fail(std::string("THREADS must be 1..64, not '") + argv[5] + "'");
  }
  std::unique_ptr<NoThreadPoolGuard> single_thread;
  if (threads == 1) {
    single_thread = std::make_unique<NoThreadPoolGuard>();
  } else {
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (pool == nullptr || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads))) {
      fail("cannot size the thread pool to " + std::to_string(threads) + " threads");
    }
  }

  Module module(model_path, Module::LoadMode::File);
  // Full flatbuffer verification: this runner exists to validate artifacts, so a damaged file must fail loudly here.
  Error err = module.load(executorch::runtime::Program::Verification::InternalConsistency);
  if (err != Error::Ok) {
    fail(std::string("cannot load '") + model_path + "' as an ExecuTorch program (" +
         executorch::runtime::to_string(err) + "): the file is corrupted, truncated, or not a .pte written by executorch 1.5");
  }
  std::string method = argc == 7 ? argv[6] : "";
  if (method.empty()) {
    auto names = module.method_names();
    if (!names.ok() || names.get().size() != 1) {
      fail(std::string("'") + model_path + "' has several methods: name the one to run (METHOD)");
    }
    method = *names.get().begin();
  }
  auto meta = module.method_meta(method);
  if (!meta.ok()) {
    fail(std::string("'") + model_path + "' has no '" + method + "' method");
  }
  err = module.load_method(method);
  if (err != Error::Ok) {
    fail("cannot prepare the '" + method + "' method (" + executorch::runtime::to_string(err) +
         "): a missing operator or backend means the runner was built without that kernel library");
  }

  const std::vector<InputSpec> specs = read_input_specs(meta.get());
  size_t sample_bytes = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    sample_bytes += specs[i].nbytes;
    std::printf("input %zu: %s\n", i, describe(specs[i]).c_str());
  }
  std::vector<char> data = read_file(argv[2]);
  if (sample_bytes == 0 || data.empty() || data.size() % sample_bytes != 0) {
    fail("input file holds " + std::to_string(data.size()) + " bytes, not a whole number of " +
         std::to_string(sample_bytes) + "-byte samples (see the input lines above)");
  }
  const size_t num_samples = data.size() / sample_bytes;
  if (argc >= 5 && std::to_string(num_samples) != argv[4]) {
    fail("input file holds " + std::to_string(data.size()) + " bytes but " + argv[4] + " samples of " +
         std::to_string(sample_bytes) + " bytes were announced: the inputs do not match the program's dtypes and "
         "shapes (see the input lines above)");
  }

  std::FILE* out = std::fopen(argv[3], "wb");
  if (out == nullptr) {
    fail(std::string("cannot write output file '") + argv[3] + "'");
  }
  for (size_t n = 0; n < num_samples; ++n) {
    char* cursor = data.data() + n * sample_bytes;
    std::vector<TensorPtr> tensors;
    std::vector<EValue> inputs;
    for (const InputSpec& spec : specs) {
      tensors.push_back(from_blob(cursor, spec.sizes, spec.dtype));
      inputs.emplace_back(tensors.back());
      cursor += spec.nbytes;
    }

    marker(XEDGE_MARKER_START);
    auto result = module.execute(method, inputs);
    marker(XEDGE_MARKER_STOP);

    if (!result.ok()) {
      fail("forward failed on sample " + std::to_string(n) + " (" + executorch::runtime::to_string(result.error()) +
           ")");
    }
    if (result->empty() || !result->at(0).isTensor()) {
      fail("output 0 of forward is not a tensor");
    }
    const auto& logits = result->at(0).toTensor();
    if (logits.scalar_type() != ScalarType::Float) {
      fail(std::string("output 0 is ") + executorch::runtime::toString(logits.scalar_type()) +
           ", expected Float logits");
    }
    const float* values = logits.const_data_ptr<float>();
    std::fwrite(values, sizeof(float), logits.numel(), out);
    std::printf("sample %zu:", n);
    for (ssize_t c = 0; c < logits.numel(); ++c) {
      std::printf(" %.9g", values[c]);
    }
    std::printf("\n");
  }
  if (std::fclose(out) != 0) {
    fail(std::string("cannot finish writing '") + argv[3] + "'");
  }
  return 0;
}
