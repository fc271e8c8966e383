"""Run a .tflite model inside the emulated ARM device, with whichever LiteRT runtime is on PYTHONPATH.

    python3 tflite_guest.py RUNTIME MODEL.tflite INPUTS.bin OUTPUTS.bin NUM_SAMPLES [DELEGATE [THREADS [SIGNATURE]]]

RUNTIME is ``ai-edge-litert`` or ``tflite-runtime``; DELEGATE is ``xnnpack`` (the runtime's default) or ``cpu`` (the
builtin kernels without the default XNNPACK delegate, as an artifact for ``delegate: cpu`` is meant to run); THREADS
is the interpreter's num_threads (default 1); SIGNATURE the signature to run (default: the model's first; a model
with length buckets has one per length: forward_32, ...). Runs with the guest's own python3 (Debian arm64), so it uses only
the standard library, numpy and the runtime. Same file format as pte_runner: the input tensors' dtypes and shapes come
from the model; INPUTS.bin holds N samples, each every input's raw little-endian bytes in the model's input order.
Output 0 is written as float32 (dequantized if the model's output is integer), and one line is printed per sample.

The marker syscall around each invoke() lets the qemu plugin count the instructions of exactly the inference; keep
the numbers in step with marker.h.
"""

import ctypes
import sys

import numpy as np

MARKER_SYSCALL = 0x5845
MARKER_MAGIC = 0x7865646765
MARKER_START, MARKER_STOP = 1, 0


def make_interpreter(runtime, model, delegate, threads=1):
    if runtime == "ai-edge-litert":
        from ai_edge_litert import interpreter as module
    elif runtime == "tflite-runtime":
        from tflite_runtime import interpreter as module
    else:
        sys.exit(f"tflite_guest: unknown runtime {runtime!r} (ai-edge-litert or tflite-runtime)")
    options = {}
    if delegate == "cpu":
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return module.Interpreter(model_path=model, num_threads=threads, **options)


def main():
    runtime, model, inputs_path, outputs_path, num_samples = sys.argv[1:6]
    delegate = sys.argv[6] if len(sys.argv) > 6 else "xnnpack"
    threads = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    signature = sys.argv[8] if len(sys.argv) > 8 else None
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long]

    interpreter = make_interpreter(runtime, model, delegate, threads)
    interpreter.allocate_tensors()
    signatures = interpreter.get_signature_list()
    key = signature or next(iter(signatures))
    if key not in signatures:
        sys.exit(f"tflite_guest: error: the model has no signature {key!r} (it has {sorted(signatures)})")
    runner = interpreter.get_signature_runner(key)
    by_name = runner.get_input_details()
    names = sorted(by_name, key=lambda n: int(n.rsplit("_", 1)[-1]))  # args_0, args_1, ...: the exported order
    input_details = [by_name[n] for n in names]
    output_name, output = next(iter(runner.get_output_details().items()))
    sample_bytes = 0
    for i, detail in enumerate(input_details):
        nbytes = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
        sample_bytes += nbytes
        print(f"input {i}: {np.dtype(detail['dtype']).name} {list(detail['shape'])} = {nbytes} bytes", flush=True)

    data = open(inputs_path, "rb").read()
    if sample_bytes == 0 or len(data) != int(num_samples) * sample_bytes:
        sys.exit(
            f"tflite_guest: error: input file holds {len(data)} bytes, not {num_samples} samples of {sample_bytes} "
            "bytes: the inputs do not match the model's dtypes and shapes (see the input lines above)"
        )
    scale, zero_point = output["quantization"]

    with open(outputs_path, "wb") as out:
        for n in range(len(data) // sample_bytes):
            offset = n * sample_bytes
            feed = {}
            for name, detail in zip(names, input_details):
                dtype = np.dtype(detail["dtype"]).newbyteorder("<")
                count = int(np.prod(detail["shape"]))
                feed[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(detail["shape"])
                offset += count * dtype.itemsize

            syscall(MARKER_SYSCALL, MARKER_MAGIC, MARKER_START)
            logits = runner(**feed)[output_name]  # sets the inputs, invokes the signature's subgraph
            syscall(MARKER_SYSCALL, MARKER_MAGIC, MARKER_STOP)

            if np.issubdtype(logits.dtype, np.integer) and scale:
                logits = (logits.astype(np.float32) - zero_point) * scale
            logits = logits.astype("<f4").reshape(-1)
            out.write(logits.tobytes())
            print(f"sample {n}: " + " ".join(f"{v:.9g}" for v in logits), flush=True)


if __name__ == "__main__":
    main()
