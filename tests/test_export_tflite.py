"""TFLite export: every recipe converts, runs and stays close to the eager student; unsafe models never ship."""

import flatbuffers
import numpy as np
import pytest
import torch

from toolkit.export_tflite import (
    TfliteExportError,
    check_graph,
    convert_fp32,
    export_tflite,
    list_operators,
    read_model,
    run_tflite,
)
from toolkit.manifest import ArtifactRecord
from toolkit.pipeline import host_check
from toolkit.profiles import Artifact, Tolerances
from toolkit.student import StudentConfig, XLNetStudent, eager_logits, model_inputs
from toolkit.tflite_runtime_env import TfliteRuntimeError, require_loadable_by_tflite_runtime

LOOSE = Tolerances(
    max_accuracy_drop_points=100, min_argmax_agreement=0.0, fp32_max_abs_logit_diff=1e-4,
    emulator_fp32_max_abs_diff=1e-4, emulator_int8_max_steps=3,
)


def tiny_student(**kw) -> XLNetStudent:
    torch.manual_seed(0)
    config = StudentConfig(vocab_size=120, d_model=32, n_layer=1, n_head=4, d_inner=64, num_labels=3, seq_len=16, **kw)
    student = XLNetStudent(config).eval()
    for p in student.parameters():  # larger-than-init weights: logits that differ between samples
        torch.nn.init.normal_(p, std=0.2)
    return student


def encoded(config: StudentConfig, n: int, seed: int) -> list[np.ndarray]:
    """Left-padded samples ending in <sep> <cls>, as model_inputs arrays."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, config.vocab_size, (n, config.seq_len)).astype(np.int32)
    mask = np.ones_like(ids)
    for row in range(n):
        pad = rng.integers(0, config.seq_len - 4)
        ids[row, :pad], mask[row, :pad] = 5, 0
    ids[:, -2:] = [4, 3]
    return model_inputs(config, ids, mask)


@pytest.fixture(scope="module")
def student():
    return tiny_student()


@pytest.fixture(scope="module")
def data(student):
    return {"calibration": encoded(student.config, 32, 1), "check": encoded(student.config, 16, 2)}


def artifact(recipe: str, runtime: str = "ai-edge-litert", delegate: str = "xnnpack") -> Artifact:
    return Artifact(format="tflite", recipe=recipe, runtime=runtime, delegate=delegate)


@pytest.mark.parametrize("recipe", ["fp32", "fp16-weights", "weight-only-int8", "dynamic-int8", "dynamic-int4",
                                    "full-int8"])
def test_recipe_converts_runs_and_matches_eager(recipe, student, data, tmp_path):
    path = tmp_path / f"{recipe}.tflite"
    details = export_tflite(student, artifact(recipe), path, data["calibration"])
    assert path.is_file() and details["recipe"] == recipe and sum(details["operators"].values()) > 0
    ops = list_operators(path)
    dtypes = {t for op in ops for t in (*op.input_types, *op.output_types)}
    assert "INT64" not in dtypes and not any(op.name.startswith(("STABLEHLO_", "CUSTOM")) for op in ops)
    reference = eager_logits(student, data["check"])
    logits = run_tflite(path, data["check"])
    if recipe == "fp32":
        assert np.abs(logits - reference).max() <= 1e-4
    elif recipe == "full-int8":
        assert "QUANTIZE" in {op.name for op in ops}
        assert any(t == "INT8" for op in ops if op.name == "FULLY_CONNECTED" for t in op.input_types)
    if recipe != "fp32":
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9
        assert np.abs(logits - reference).max() <= 0.2


def test_full_int8_needs_calibration(student, tmp_path):
    with pytest.raises(TfliteExportError, match="calibration"):
        export_tflite(student, artifact("full-int8"), tmp_path / "m.tflite", None)


def test_nnapi_lowering_is_the_same_function(data, tmp_path):
    """Per-head FULLY_CONNECTED attention, GATHER embedding, L2_NORMALIZATION: same logits, no BATCH_MATMUL."""
    friendly = tiny_student(activation="relu", normalisation="l2norm", mask_input="additive_bias")
    inputs = encoded(friendly.config, 8, 3)
    path = tmp_path / "nnapi-fp32.tflite"
    path.write_bytes(convert_fp32(friendly, nnapi=True))
    names = {op.name for op in list_operators(path)}
    assert "BATCH_MATMUL" not in names and {"GATHER", "L2_NORMALIZATION"} <= names
    assert np.abs(run_tflite(path, inputs) - eager_logits(friendly, inputs)).max() <= 1e-4
    assert friendly.gather_rows is None, "the variants are chosen on a copy: the caller's student is untouched"
    assert not any(getattr(m, "per_head_linear", False) for m in friendly.modules())


def test_host_check_gates_on_the_profile_tolerances(student, data, tmp_path):
    path = tmp_path / "fp32.tflite"
    record = ArtifactRecord.for_file(artifact("fp32"), path, tmp_path, student.config,
                                     export_tflite(student, artifact("fp32"), path, None))
    reference = eager_logits(student, data["check"])
    labels = reference.argmax(1)
    passed = host_check(record, path, data["check"], labels, reference, LOOSE)
    assert passed["passed"] and passed["max_abs_logit_diff"] <= 1e-4
    impossible = LOOSE.model_copy(update={"fp32_max_abs_logit_diff": 1e-12})
    failed = host_check(record, path, data["check"], labels, reference, impossible)
    assert not failed["passed"] and "max |logit diff|" in failed["failures"][0]


def test_int64_and_stablehlo_are_refused():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.eye(4)[None] + x  # torch.eye at run time: not a constant

    import litert_torch

    model = bytes(litert_torch.convert(Bad(), (torch.zeros(1, 4, 4),)).model_content())
    names = {op.name for op in list_operators(model)}
    if any(n.startswith("STABLEHLO_") for n in names):
        with pytest.raises(TfliteExportError, match="STABLEHLO"):
            check_graph(model)
    else:  # the converter folded it: the guard must then accept the graph
        check_graph(model)



def batch_matmul_errors(model: bytes, inputs: list[np.ndarray]) -> list[float]:
    """Per BATCH_MATMUL of ``model`` run on one sample: max |LiteRT's output - the exact product of its dequantized
    operands|, in output quantization steps."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    runner_inputs = sorted(interpreter.get_input_details(), key=lambda d: d["name"])
    interpreter.allocate_tensors()
    for detail, array in zip(runner_inputs, inputs):
        interpreter.set_tensor(detail["index"], array[:1].astype(detail["dtype"]))
    interpreter.invoke()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}

    def dequantized(index: int) -> np.ndarray:
        q, value = details[index]["quantization_parameters"], interpreter.get_tensor(index).astype(np.float64)
        shape = [1] * value.ndim
        shape[q["quantized_dimension"]] = -1  # per channel: one scale per slice of that dimension
        scales, zero_points = q["scales"].reshape(shape), q["zero_points"].reshape(shape)
        return (value - zero_points) * scales if len(q["scales"]) > 1 else (value - zero_points[0]) * scales.flat[0]

    errors = []
    for op in interpreter._get_ops_details():
        if op["op_name"] == "BATCH_MATMUL":
            lhs, rhs = (dequantized(i) for i in op["inputs"])
            step = details[op["outputs"][0]]["quantization_parameters"]["scales"][0]
            errors.append(float(np.abs(dequantized(op["outputs"][0]) - lhs @ rhs).max() / step))
    return errors


def test_full_int8_attention_products_are_exact_and_per_channel_ones_are_refused(student, data):
    """LiteRT's int8 BATCH_MATMUL ignores per-channel scales of a constant operand (the position keys, the segment
    embeddings): ai-edge-quantizer's default made those products wrong. The shipped recipe quantizes them per tensor;
    check_graph refuses a model that does not."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    from toolkit.export_tflite import calibrate, quantize

    fp32 = convert_fp32(student)
    shipped = quantize(fp32, "full-int8", data["calibration"])
    check_graph(shipped)
    errors = batch_matmul_errors(shipped, data["check"])
    assert len(errors) == 4 and max(errors) <= 1.0  # content, position, segment, context: rounding only

    manager = recipe_manager.RecipeManager()  # ai-edge-quantizer's default granularity (per channel)
    manager.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                              activation_num_bits=8, weight_num_bits=8)  # fmt: skip
    for io in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
        manager.add_quantization_config(regex=".*", operation_name=io, algorithm_key=AlgorithmName.NO_QUANTIZE)
    recipe = manager.get_quantization_recipe()
    qt = quantizer.Quantizer(fp32)
    qt.load_quantization_recipe(recipe)
    per_channel = bytes(qt.quantize(calibrate(fp32, recipe, data["calibration"]),
                                    enable_progress_report=False).quantized_model)  # fmt: skip
    assert max(batch_matmul_errors(per_channel, data["check"])) > 10  # the runtime fact the recipe works around
    with pytest.raises(TfliteExportError, match="BATCH_MATMUL operands quantized per channel"):
        check_graph(per_channel)

# --- tflite-runtime 2.14 (own venv, built once per cache: ~16 s) -------------------------------------------------


@pytest.mark.parametrize("recipe,reason", [("dynamic-int8", "silently wrong"), ("full-int8", "crashes")])
def test_recipes_2_14_runs_wrongly_are_refused_for_tflite_runtime(recipe, reason, student, tmp_path):
    with pytest.raises(ValueError, match=reason):  # the profile refuses it (targets/rules/runtimes-delegates.yaml)
        artifact(recipe, "tflite-runtime")
    unchecked = Artifact.model_construct(format="tflite", recipe=recipe, runtime="tflite-runtime", delegate="xnnpack")
    with pytest.raises(TfliteExportError, match=reason):  # and so does the exporter, for a hand-built artifact
        export_tflite(student, unchecked, tmp_path / "m.tflite", None)
    assert not (tmp_path / "m.tflite").exists()


def test_op_version_unknown_to_tflite_runtime_is_caught(student, tmp_path):
    """A FULLY_CONNECTED v12 (what newer converters emit) must be refused, naming the op and version."""
    path = tmp_path / "fc12.tflite"
    path.write_bytes(convert_fp32(student))
    model = read_model(path)
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == 9:  # FULLY_CONNECTED
            code.version = 12
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    assert {op.version for op in list_operators(path) if op.name == "FULLY_CONNECTED"} == {12}
    with pytest.raises(TfliteRuntimeError, match="FULLY_CONNECTED v12"):
        require_loadable_by_tflite_runtime(path)


@pytest.mark.parametrize("recipe", ["fp32", "weight-only-int8"])
def test_tflite_runtime_214_verifies_its_own_outputs(recipe, student, data, tmp_path):
    tolerances = LOOSE.model_copy(update={"min_argmax_agreement": 0.9})
    path = tmp_path / f"{recipe}.tflite"
    record = ArtifactRecord.for_file(artifact(recipe, "tflite-runtime"), path, tmp_path, student.config,
                                     export_tflite(student, artifact(recipe, "tflite-runtime"), path,
                                                   data["calibration"]))
    reference = eager_logits(student, data["check"])
    check = host_check(record, path, data["check"], reference.argmax(1), reference, tolerances)
    assert check["passed"] and check["name"].startswith("host tflite-runtime")
    old = run_tflite(path, data["check"], "tflite-runtime")
    new = run_tflite(path, data["check"], "ai-edge-litert")
    assert np.abs(old - new).max() <= (1e-5 if recipe == "fp32" else 0.05)
