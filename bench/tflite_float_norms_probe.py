"""Probe: LiteRT ``full-int8`` with the LayerNorms' ops left in float (ai-edge-quantizer NO_QUANTIZE on the ops
whose scope matches ``LayerNorm_layer_norm``), against the toolkit's ``full-int8``, on one bench student.

The ExecuTorch counterpart (``int8-static-histogram``'s float LayerNorm ops) lifted some students' agreement; this
checks whether LiteRT's full-int8 gains the same way. Prints dev agreement with the fp32 student and the operator
histogram of each model (QUANTIZE/DEQUANTIZE counts show how many ops went float).

    python bench/tflite_float_norms_probe.py sst2-1k out/bench-distill/sst2-1k/0.1/today/student
"""

import sys
import time
from pathlib import Path
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill import task_data  # noqa: E402

import toolkit.export_tflite as export_tflite  # noqa: E402
from toolkit.registry import get_recipe  # noqa: E402
from toolkit.student import calibration_inputs, eager_logits, encode_for, load_student  # noqa: E402
from toolkit.tflite_graph import operator_histogram  # noqa: E402
from toolkit.tokenizer import XLNetTextEncoder  # noqa: E402


def float_norms_recipe():
    from ai_edge_quantizer import qtyping, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(get_recipe("tflite", "full-int8").build())
    manager.add_quantization_config(regex=".*LayerNorm_layer_norm.*",
                                    operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                    algorithm_key=AlgorithmName.NO_QUANTIZE)  # fmt: skip
    return manager.get_quantization_recipe()


def main() -> None:
    task, folder = sys.argv[1], sys.argv[2]
    _, train, dev, _ = task_data(task)
    student = load_student(folder).eval()
    encoder = XLNetTextEncoder.from_pretrained(folder)
    inputs = encode_for(student, encoder, dev)
    reference = eager_logits(student, inputs).argmax(1)
    calibration = calibration_inputs(student, encoder, train, 0)
    fp32 = export_tflite.convert_fp32(student)
    toolkit_recipe = export_tflite._quantization_recipe
    with tempfile.TemporaryDirectory() as scratch:
        for name, recipe in (("full-int8", None), ("full-int8, LayerNorm ops float", float_norms_recipe)):
            # quantize() looks its recipe up by name: the probe swaps the lookup for its variant
            export_tflite._quantization_recipe = (lambda _name, build=recipe: build()) if recipe else toolkit_recipe
            started = time.time()
            model = export_tflite.quantize(fp32, "full-int8", calibration)
            path = Path(scratch) / "model.tflite"
            path.write_bytes(model)
            agreement = float((export_tflite.run_tflite(path, inputs).argmax(1) == reference).mean())
            seconds = time.time() - started
            print(f"{name}: dev agreement {agreement:.4f} ({seconds:.0f} s); ops {operator_histogram(model)}")
    export_tflite._quantization_recipe = toolkit_recipe


if __name__ == "__main__":
    main()
