"""ExecuTorch export: every .pte recipe runs in the real runtime, matches the eager student, and is gated.

One tiny student, each recipe exported once (module fixture): lowering is the slow part (~5-10 s a recipe).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.export_pte import PteExportError, export_pte, run_pte
from toolkit.export_workers import ExportJob, export_in_order
from toolkit.manifest import ArtifactRecord
from toolkit.pipeline import host_check
from toolkit.profiles import Artifact, Tolerances
from toolkit.registry import recipe_names
from toolkit.student import StudentConfig, XLNetStudent, eager_logits, model_inputs, save_student

CONFIG = StudentConfig(vocab_size=200, d_model=32, n_layer=1, n_head=2, d_inner=64, num_labels=3, seq_len=16)
PTE_RECIPES = recipe_names("pte")
N_LINEARS = CONFIG.n_layer * 7 + 2  # q k v r o + 2 feed-forward per layer, summary, logits_proj
TOLERANCES = Tolerances(
    max_accuracy_drop_points=1.5,
    min_argmax_agreement=0.9,
    fp32_max_abs_logit_diff=1e-4,
    emulator_fp32_max_abs_diff=1e-4,
    emulator_int8_max_steps=3,
)


def pte_artifact(recipe: str) -> Artifact:
    return Artifact(format="pte", recipe=recipe, runtime="executorch", delegate="xnnpack")


def make_student() -> XLNetStudent:
    """A random student whose head separates its inputs into all three classes.

    A random student predicts one class for everything (its pooled <cls> state barely moves), which would make
    argmax agreement pass trivially. So the head reads the two directions in which pooled states vary most,
    with the three classes 120 degrees apart in that plane.
    """
    torch.manual_seed(0)
    student = XLNetStudent(CONFIG).eval()
    pooled: list[torch.Tensor] = []
    hook = student.summary.register_forward_hook(lambda module, args, out: pooled.append(torch.tanh(out)))
    eager_logits(student, encoded_inputs(64, seed=3))
    hook.remove()
    states = torch.cat(pooled)
    _, scale, directions = torch.linalg.svd(states - states.mean(0), full_matrices=False)
    plane = directions[:2] / scale[:2, None]  # unit variance along each of the two directions
    angles = torch.tensor([0.0, 2.0, 4.0]) * torch.pi / 3
    weight = 60.0 * (torch.cos(angles)[:, None] * plane[0] + torch.sin(angles)[:, None] * plane[1])
    with torch.no_grad():
        student.logits_proj.weight.copy_(weight)
        student.logits_proj.bias.copy_(-(weight @ states.mean(0)))
    return student


def encoded_inputs(n: int, seed: int) -> list[np.ndarray]:
    """Left-padded id batches shaped like the tokenizer's output (pad 5, ... <sep> 4, <cls> 3)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(9, CONFIG.vocab_size, (n, CONFIG.seq_len)).astype(np.int32)
    mask = np.ones((n, CONFIG.seq_len), dtype=np.int32)
    for row in range(n):
        pads = int(rng.integers(0, CONFIG.seq_len - 4))
        ids[row, :pads], mask[row, :pads] = 5, 0
    ids[:, -2:] = [4, 3]
    return model_inputs(CONFIG, ids, mask)


@pytest.fixture(scope="module")
def student() -> XLNetStudent:
    return make_student()


@pytest.fixture(scope="module")
def check_inputs() -> list[np.ndarray]:
    return encoded_inputs(48, seed=1)


@pytest.fixture(scope="module")
def exported(student, check_inputs, tmp_path_factory) -> dict:
    """recipe -> (record, path), every recipe exported once (records not checked yet: the pipeline checks them);
    calibrated on a set disjoint from the check set."""
    folder = tmp_path_factory.mktemp("pte")
    save_student(student, folder / "student")  # the export workers load it from there
    calibration = encoded_inputs(8, seed=2)  # few samples: the histogram observers are slow
    jobs = [ExportJob(pte_artifact(recipe), folder / f"{recipe}.pte") for recipe in PTE_RECIPES]
    done = export_in_order(jobs, student, folder / "student", calibration, folder, None, workers=2)
    return {job.artifact.recipe: (record, job.path) for job, record in done}


def test_fp32_pte_matches_eager_student(exported, student, check_inputs):
    logits = run_pte(exported["fp32"][1], check_inputs)
    reference = eager_logits(student, check_inputs)
    assert logits.shape == (48, CONFIG.num_labels)
    assert np.abs(logits - reference).max() <= 1e-4


@pytest.mark.parametrize("recipe", PTE_RECIPES[1:])
def test_int8_pte_agrees_with_eager_student(exported, student, check_inputs, recipe):
    logits = run_pte(exported[recipe][1], check_inputs)
    reference = eager_logits(student, check_inputs)
    assert np.bincount(reference.argmax(1), minlength=3).min() >= 5, "every class must occur, or agreement is trivial"
    spread = reference.max() - reference.min()
    agreement = (logits.argmax(1) == reference.argmax(1)).mean()
    int4 = recipe == "8da4w"  # 4-bit weights: ~16x the weight rounding error of int8 on this tiny random student
    # Random inputs put some samples near a class boundary; real data does better. A broken lowering agrees on
    # about a third of the samples (3 classes) with errors of the range's size.
    assert agreement >= (0.75 if int4 else 0.85)
    assert np.abs(logits - reference).max() <= (0.3 if int4 else 0.15) * spread
    # Not trivially equal to float: the program really is quantized.
    assert np.abs(logits - reference).max() > 1e-5


@pytest.mark.parametrize("recipe", PTE_RECIPES)
def test_record_describes_program_and_delegation(exported, recipe):
    record, path = exported[recipe]
    assert record.name == f"pte-{recipe}" and record.recipe == recipe
    assert record.valid is False, "an export alone is never valid: the host check decides"
    assert record.bytes == path.stat().st_size and len(record.sha256) == 64
    assert [i["name"] for i in record.inputs] == ["input_ids", "attention_mask"]
    assert record.outputs == [{"name": "logits", "dtype": "float32", "shape": [1, CONFIG.num_labels]}]
    delegation = record.details["delegation"]
    assert delegation["partitions"] >= 1
    assert delegation["delegated_linears"] == N_LINEARS, "XNNPACK should take every linear"
    assert not any("linear" in op or "mm" in op for op in delegation["portable_ops"]), delegation["portable_ops"]
    # The student's XNNPACK op variants leave no LayerNorm, broadcast expand or unsqueeze between delegate calls.
    left = {op.split(".")[1] for op in delegation["portable_ops"]}
    assert not left & {"native_layer_norm", "expand_copy", "unsqueeze_copy"}, delegation["portable_ops"]
    assert delegation["partitions"] <= 2 * CONFIG.n_layer + 1, "work should land in few large XNNPACK partitions"


@pytest.mark.parametrize("recipe", ["int8-static-embedding", "int8-dynamic-embedding"])
def test_quantized_embedding_runs_on_the_quantized_kernel(exported, recipe):
    portable = exported[recipe][0].details["delegation"]["portable_ops"]
    assert "quantized_decomposed.embedding_byte.out" in portable, portable
    assert "aten.embedding.out" not in portable
    assert "aten.embedding.out" in exported["int8-static"][0].details["delegation"]["portable_ops"]


def test_int8_files_are_smaller(exported):
    # The tiny student's file is mostly program overhead and its float embedding; real students shrink ~3-4x.
    size = {recipe: record.bytes for recipe, (record, _) in exported.items()}
    assert size["int8-dynamic"] < 0.85 * size["fp32"]
    assert size["int8-static"] < 0.85 * size["fp32"]
    table_bytes = CONFIG.vocab_size * CONFIG.d_model * 4
    assert size["int8-static"] - size["int8-static-embedding"] > 0.5 * table_bytes, "the embedding table is int8"


def test_unknown_recipe_and_missing_calibration_are_refused(student, tmp_path):
    # The profile validator already rejects unknown recipes; model_construct skips it, as a hand-built call might.
    bogus = Artifact.model_construct(format="pte", recipe="int4-magic", runtime="executorch", delegate="xnnpack")
    with pytest.raises(PteExportError, match="unknown .pte recipe 'int4-magic'"):
        export_pte(student, bogus, tmp_path / "x.pte")
    with pytest.raises(PteExportError, match="calibration"):
        export_pte(student, pte_artifact("int8-static"), tmp_path / "y.pte", calibration=None)
    assert not list(tmp_path.iterdir()), "a refused export must leave no file"


def test_host_check_fails_on_a_perturbed_reference(exported, student, check_inputs):
    record, path = exported["int8-dynamic"]
    reference = eager_logits(student, check_inputs)
    labels = reference.argmax(1)
    agreement_only = TOLERANCES.model_copy(update={"max_accuracy_drop_points": 100})  # random inputs: no accuracy
    passed = host_check(record, path, check_inputs, labels, reference, agreement_only)
    assert passed["passed"], passed["failures"]
    flipped = reference.copy()
    flipped[:, [0, 1]] = reference[:, [1, 0]] + 0.0  # swap two classes: most argmaxes change
    failed = host_check(record, path, check_inputs, labels, flipped, agreement_only)
    assert not failed["passed"] and any("argmax agreement" in f for f in failed["failures"])


def test_host_check_holds_fp32_to_the_float_bound(exported, student, check_inputs):
    record, path = exported["fp32"]
    reference = eager_logits(student, check_inputs)
    labels = reference.argmax(1)
    valid = host_check(record, path, check_inputs, labels, reference, TOLERANCES)
    assert valid["passed"] and valid["accuracy"] == 1.0
    too_strict = TOLERANCES.model_copy(update={"fp32_max_abs_logit_diff": 1e-12})
    failed = host_check(record, path, check_inputs, labels, reference, too_strict)
    assert failed["passed"] is False and "max |logit diff|" in failed["failures"][0]
    # an int8 recipe is not held to the float bound (its compute is integer)
    int8_record, int8_path = exported["int8-dynamic"]
    int8_check = host_check(int8_record, int8_path, check_inputs, labels, reference,
                            too_strict.model_copy(update={"max_accuracy_drop_points": 100}))
    assert int8_check["passed"], int8_check["failures"]
