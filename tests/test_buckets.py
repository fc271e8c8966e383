"""Length buckets: the app's bucket rule, and artifacts with one method (.pte) / signature (.tflite) per length.

The same text must give the same logits in every bucket that holds it (fp32: <= 1e-4; int8: the profile's
quantization-step tolerance), the file must not repeat the weights per length (no large block repeated), and the host check must route every
example through the bucket an app picks.
"""

from __future__ import annotations

import lzma

import numpy as np
import pytest
import torch

from toolkit.buckets import (
    at_length,
    expected_latency_ms,
    method_name,
    pick_length,
    picked_lengths,
    run_by_bucket,
    shares,
    token_counts,
)
from toolkit.export_pte import run_pte
from toolkit.export_tflite import run_tflite
from toolkit.export_workers import ExportJob, export_in_order
from toolkit.manifest import run_on_host
from toolkit.profiles import Artifact, load_profile
from toolkit.student import StudentConfig, XLNetStudent, eager_logits, model_inputs, save_student
from toolkit.tokenizer import XLNetTextEncoder

LENGTHS = (8, 16, 32)
EXPORTED_LENGTHS = (8, 32)  # the artifacts: two methods show the sharing and the routing at 2/3 of the export time
# A large vocabulary: weights (~0.3M) outweigh each method's own program and constants, as in real students.
CONFIG = StudentConfig(vocab_size=8000, d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=2, seq_len=32,
                       dropout=0.0)  # fmt: skip
ARTIFACTS = {
    "pte-fp32": Artifact(format="pte", recipe="fp32", runtime="executorch", delegate="xnnpack"),
    "pte-int8-dynamic-embedding": Artifact(format="pte", recipe="int8-dynamic-embedding", runtime="executorch",
                                           delegate="xnnpack"),
    "tflite-fp32": Artifact(format="tflite", recipe="fp32", runtime="ai-edge-litert", delegate="cpu"),
    "tflite-dynamic-int8": Artifact(format="tflite", recipe="dynamic-int8", runtime="ai-edge-litert", delegate="cpu"),
}
# Quantized weights are where a per-length copy would hide (ai-edge-quantizer writes one per signature's tensor).
SIZE_CHECKED = ("pte-int8-dynamic-embedding", "tflite-dynamic-int8")


def inputs_with_tokens(tokens: list[int], seed: int = 0) -> list[np.ndarray]:
    """Left-padded model inputs at the longest length, one row per entry of ``tokens`` (real tokens incl. specials)."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(tokens), CONFIG.seq_len), 5, dtype=np.int32)
    mask = np.zeros_like(ids)
    for row, count in enumerate(tokens):
        ids[row, -count:] = rng.integers(9, CONFIG.vocab_size, count)
        ids[row, -2:] = [4, 3]
        mask[row, -count:] = 1
    return model_inputs(CONFIG, ids, mask)


# ---------------------------------------------------------------------------------------------- the app's rule


def test_the_shortest_bucket_that_holds_the_text_else_the_longest():
    assert [pick_length(n, LENGTHS) for n in (1, 8, 9, 16, 17, 32, 33, 500)] == [8, 8, 16, 16, 32, 32, 32, 32]
    assert pick_length(5, [64, 16]) == 16  # order of the list does not matter


def test_at_length_is_what_the_tokenizer_gives_at_that_length_for_texts_that_fit():
    encoder = XLNetTextEncoder()
    texts = ["a fine film .", "unflinchingly bleak and desperate , and proud of it", ""]
    longest = encoder.encode(texts, seq_len=32)
    tokens = np.asarray(longest.attention_mask).sum(axis=1)
    for length in LENGTHS:
        fit = [i for i in range(len(texts)) if tokens[i] <= length]
        short = encoder.encode([texts[i] for i in fit], seq_len=length)
        cut = at_length([np.asarray(a)[fit] for a in (longest.input_ids, longest.attention_mask,
                                                       longest.token_type_ids)], length)  # fmt: skip
        assert [a.tolist() for a in cut] == [np.asarray(a).tolist() for a in
                                             (short.input_ids, short.attention_mask, short.token_type_ids)]
    assert tokens.max() > LENGTHS[0]  # a text that does not fit the shortest bucket was left out


def test_token_counts_read_either_mask_kind():
    inputs = inputs_with_tokens([3, 12, 32])
    assert token_counts(inputs).tolist() == [3, 12, 32]
    bias = ((1.0 - inputs[1].astype(np.float32)) * -30.0).astype(np.float32)
    assert token_counts([inputs[0], bias]).tolist() == [3, 12, 32]


def test_run_by_bucket_runs_each_example_at_its_bucket_and_keeps_the_order():
    inputs = inputs_with_tokens([20, 3, 9, 16, 8])
    seen = []

    def run(arrays, length):
        seen.append((length, arrays[0].shape))
        return np.full((len(arrays[0]), 2), length, dtype=np.float32)

    logits = run_by_bucket(run, inputs, LENGTHS)
    assert logits[:, 0].tolist() == [32, 8, 16, 16, 8]
    assert seen == [(8, (2, 8)), (16, (2, 16)), (32, (1, 32))]


def test_expected_latency_weighs_each_bucket_by_its_share():
    picked = picked_lengths(np.array([3, 5, 12, 30]), LENGTHS)
    bucket_shares = shares(picked, LENGTHS)
    assert bucket_shares == {8: 0.5, 16: 0.25, 32: 0.25}
    assert expected_latency_ms({8: 1.0, 16: 2.0, 32: 4.0}, bucket_shares) == pytest.approx(0.5 + 0.5 + 1.0)


def test_profile_lengths_are_validated():
    profile = load_profile("raspberry-pi-4")
    assert profile.lengths[-1] == profile.sequence_length and list(profile.lengths) == sorted(profile.lengths)
    data = profile.model_dump()
    for bad, message in (([32, 64], "largest must be sequence_length"), ([32, 32, 128], "each length once"),
                         ([4, 128], "none shorter than 8")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            type(profile).model_validate({**data, "sequence_lengths": bad})


# ---------------------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def student() -> XLNetStudent:
    torch.manual_seed(0)
    student = XLNetStudent(CONFIG).init_like_xlnet(std=0.2).eval()  # larger weights: logits that differ per text
    return student


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory) -> dict:
    """name -> (bucketed path, its record)."""
    folder = tmp_path_factory.mktemp("buckets")
    save_student(student, folder / "student")  # the export workers load it from there
    jobs = [ExportJob(artifact, folder / f"{name}.{artifact.format}") for name, artifact in ARTIFACTS.items()]
    done = export_in_order(jobs, student, folder / "student", None, folder, EXPORTED_LENGTHS, workers=2)
    return {name: (job.path, record) for name, (job, record) in zip(ARTIFACTS, done)}


def compressed_share(data: bytes) -> float:
    """lzma size / size, with a window larger than any artifact here: a repeated block costs almost nothing."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 1, "dict_size": 64 << 20}]
    return len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)) / len(data)


def run_method(name: str, path, arrays, length: int) -> np.ndarray:
    if name.startswith("pte"):
        return run_pte(path, arrays, method_name(length))
    return run_tflite(path, arrays, "ai-edge-litert", method_name(length))


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_one_method_per_length_and_the_same_logits_in_every_bucket_that_holds_the_text(name, exported, student):
    path, record = exported[name]
    assert [m["name"] for m in record.methods] == ["forward_8", "forward_32"]
    assert [m["inputs"][0]["shape"] for m in record.methods] == [[1, 8], [1, 32]]
    texts = inputs_with_tokens([3, 5, 7, 8, 4, 6], seed=4)  # every text fits the shortest bucket
    reference = eager_logits(student, texts)
    assert np.ptp(reference[:, 0]) > 1e-3, "the texts must give different logits, or agreement is trivial"
    per_length = [run_method(name, path, at_length(texts, n), n) for n in EXPORTED_LENGTHS]
    tolerance = 1e-4 if name.endswith("fp32") else 3 * np.ptp(reference) / 255  # 3 quantization steps
    for logits in per_length[1:]:
        assert np.abs(logits - per_length[0]).max() <= tolerance
    assert np.abs(per_length[-1] - reference).max() <= (1e-4 if name.endswith("fp32") else 0.05)


@pytest.mark.parametrize("name", SIZE_CHECKED)
def test_weights_are_stored_once_for_all_lengths(name, exported):
    path, _ = exported[name]
    data = path.read_bytes()
    # Quantized weights compress little (~0.8); a copy per length (2 here) would bring the share near 0.4.
    assert compressed_share(data) > 0.6, f"{name}: the file repeats a large block (weights stored per length?)"
    weights = len(data) // 2  # the measure sees a repeat: the file with one more copy of half of it
    assert compressed_share(data + data[len(data) // 4 :][:weights]) < 0.8 * compressed_share(data)


@pytest.mark.parametrize("name", ["pte-fp32", "tflite-fp32"])
def test_host_run_routes_each_example_through_its_bucket(name, exported, student):
    path, record = exported[name]
    inputs = inputs_with_tokens([30, 3, 12, 8, 17, 16], seed=5)  # both buckets: 3 and 8 fit 8, the rest go to 32
    logits = run_on_host(record.to_json(), path, inputs)
    assert np.abs(logits - eager_logits(student, inputs)).max() <= 1e-4
