"""Emulator validation: an artifact that matches passes; a wrong reference or a corrupted artifact fails."""

import json

import numpy as np
import pytest

from bundle_fixture import build_tiny_bundle, host_inputs, sst2_dev_sentences
from toolkit import validate
from toolkit.checks import gate_emulator_vs_host, compare_logits
from toolkit.manifest import run_on_host
from toolkit.profiles import load_profile

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle"))


def subset(bundle, count=4):
    texts = sst2_dev_sentences()[:count]
    inputs = host_inputs(bundle, texts)
    return inputs, np.array([0, 1, 0, 1][:count])


def pte_artifact(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["format"] == "pte")


def test_matching_artifact_passes_with_instruction_counts(bundle):
    profile = load_profile("raspberry-pi-4")
    inputs, labels = subset(bundle)
    artifact = pte_artifact(bundle)
    reference = run_on_host(artifact, bundle / artifact["file"], inputs)  # each text in its length bucket
    outcome = validate.validate_artifact(artifact, bundle, profile, inputs, labels, reference)
    assert outcome.check.passed, outcome.check.failures
    assert outcome.check.max_abs_logit_diff <= 1e-5
    assert outcome.emulator["cpu"] == "cortex-a72" and outcome.emulator["instructions_per_inference"] > 1000
    instructions_ms = outcome.emulator["instructions_per_inference"] / profile.device.instructions_per_ns / 1e6
    if outcome.emulator["estimate_method"] == "instructions":  # no llvm-mca here: the stated-IPC estimate
        assert outcome.emulator["estimated_latency_ms"] == pytest.approx(instructions_ms)
    else:  # the cycle estimate (toolkit/cycles.py), with the instruction estimate beside it and 4 threads
        assert outcome.emulator["instructions_estimate_ms"] == pytest.approx(instructions_ms)
        cycles = outcome.emulator["cycles"]
        assert cycles["instructions"] == outcome.emulator["instructions_per_inference"]
        assert outcome.emulator["estimated_latency_ms"] == pytest.approx(cycles["estimated_latency_ms"], rel=1e-3)
        assert outcome.emulator["threads"]["threads"] >= 1 and "ESTIMATE" in outcome.emulator["assumption"]


def test_wrong_reference_fails_validation(bundle, monkeypatch):
    """If the host reference is not what the device computes, validation must say so."""
    profile = load_profile("raspberry-pi-4")
    inputs, labels = subset(bundle)
    artifact = pte_artifact(bundle)
    real = validate.host_logits

    def wrong_reference(artifact, model, inputs, method=None):
        return real(artifact, model, inputs, method)[:, ::-1] + 0.5  # swapped classes: a mixed-up reference

    monkeypatch.setattr(validate, "host_logits", wrong_reference)
    reference = run_on_host(artifact, bundle / artifact["file"], inputs)
    outcome = validate.validate_artifact(artifact, bundle, profile, inputs, labels, reference)
    assert not outcome.check.passed
    assert any("max |diff|" in f for f in outcome.check.failures)


def test_int8_tolerance_is_counted_in_quantization_steps():
    tolerances = load_profile("arm64-cpu").validation.tolerances
    host = np.array([[2.0, -1.0], [0.5, 1.5]])
    step = validate.quantization_step(host)  # (2.0 - -1.0) / 255
    near = gate_emulator_vs_host(compare_logits("near", host, host + 2 * step), tolerances, False, step)
    far = gate_emulator_vs_host(compare_logits("far", host, host + 5 * step), tolerances, False, step)
    assert near.passed and near.details["max_diff_quant_steps"] == pytest.approx(2.0)
    assert not far.passed and "quantization steps" in far.failures[0]


def test_subset_is_fixed_and_seeded():
    profile = load_profile("raspberry-pi-4")
    a = validate.validation_subset(872, profile)
    assert a == validate.validation_subset(872, profile) and len(a) == profile.validation.emulator_samples
    assert len(set(a)) == len(a)


def test_android_profile_says_what_was_not_validated():
    statements = " ".join(validate.not_validated_statements(load_profile("android-nnapi")))
    assert "NNAPI delegate was NOT executed" in statements and "estimates" in statements
