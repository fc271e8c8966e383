"""Which op classes' int8 tensors cost LiteRT full-int8 its agreement with the fp32 student (a diagnostic).

The student's full-int8 model is quantized again with one class of ops at a time left in float (ai-edge-quantizer
NO_QUANTIZE), calibrated like the exporter (min/max over 256 training texts), and run over the SST-2 dev set.
On the sst2 1/4 student of bench/distill.py: all int8 0.9862; float BATCH_MATMUL 0.9966; float ADD 0.9920; float
norm ops 0.9874; the others 0.985-0.986 (what led QAT to round the attention products' operands too).

    python bench/full_int8_ops.py out/bench-distill/sst2/0.25/today/student
"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "bench")
from toolkit.export_tflite import convert_fp32, calibrate, run_tflite
from toolkit.pipeline import calibration_inputs, encode_for
from toolkit.student import load_student, eager_logits
from toolkit.tokenizer import XLNetTextEncoder
from toolkit.data import load_labelled
from common import SHARED_SST2
from ai_edge_quantizer import qtyping, recipe_manager, quantizer
from ai_edge_quantizer.algorithm_manager import AlgorithmName

folder = Path(sys.argv[1])
student, enc = load_student(folder), XLNetTextEncoder.from_pretrained(folder)
train = load_labelled(SHARED_SST2 / "train.tsv")
dev = load_labelled(SHARED_SST2 / "dev.tsv", label_names=train.label_names)
inputs = encode_for(student, enc, dev)
ref = eager_logits(student, inputs).argmax(1)
cal = calibration_inputs(student, enc, train, 0)
fp32 = convert_fp32(student)
O = qtyping.TFLOperationName
groups = {"all int8": [], "float SOFTMAX": [O.SOFTMAX], "float BATCH_MATMUL": [O.BATCH_MATMUL],
          "float norm ops": [O.MEAN, O.SUB, O.RSQRT, O.SQUARED_DIFFERENCE, O.MUL, O.DIV, O.SQRT, O.SUM],
          "float GELU": [O.GELU], "float ADD": [O.ADD], "float FULLY_CONNECTED": [O.FULLY_CONNECTED],
          "float EMBEDDING/GATHER": [O.EMBEDDING_LOOKUP, O.GATHER, O.GATHER_ND]}
for name, ops in groups.items():
    m = recipe_manager.RecipeManager()
    m.add_static_config(regex=".*", operation_name=O.ALL_SUPPORTED, activation_num_bits=8, weight_num_bits=8)
    for io in [O.INPUT, O.OUTPUT] + ops:
        m.add_quantization_config(regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE)
    recipe = m.get_quantization_recipe()
    qt = quantizer.Quantizer(fp32); qt.load_quantization_recipe(recipe)
    ranges = calibrate(fp32, recipe, cal)
    model = bytes(qt.quantize(ranges, enable_progress_report=False).quantized_model)
    p = folder.parent / "full-int8-probe.tflite"; p.write_bytes(model)
    got = run_tflite(p, inputs).argmax(1)
    print(f"{name}: agreement with fp32 {np.mean(got == ref):.4f}", flush=True)
