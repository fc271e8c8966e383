"""Artifacts exported side by side in worker processes are the same files as exported one after another here."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml

from toolkit.export_pte import PteExportError
from toolkit.export_workers import ExportJob, export_in_order
from toolkit.profiles import load_profile, shipped_profile_paths
from toolkit.student import StudentConfig, XLNetStudent, save_student


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def saved_student(tmp_path_factory):
    torch.manual_seed(0)
    config = StudentConfig(vocab_size=64, d_model=32, n_layer=1, n_head=2, d_inner=64, num_labels=2, seq_len=16)
    student = XLNetStudent(config).eval()
    folder = tmp_path_factory.mktemp("student")
    save_student(student, folder)
    return student, folder


def profile_with(tmp_path, artifacts):
    data = yaml.safe_load(shipped_profile_paths()["arm64-cpu"].read_text())
    data.update(name="workers", sequence_length=16, sequence_lengths=[8, 16], artifacts=artifacts)
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(path)


def test_two_workers_write_the_same_files_as_one_in_order(saved_student, tmp_path):
    student, folder = saved_student
    profile = profile_with(tmp_path, [
        {"format": "pte", "recipe": "fp32", "runtime": "executorch", "delegate": "xnnpack"},
        {"format": "tflite", "recipe": "fp32", "runtime": "ai-edge-litert", "delegate": "xnnpack"},
    ])  # fmt: skip
    records = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        jobs = [ExportJob(a, out / f"{a.name}.{a.format}") for a in profile.artifacts]
        done = list(export_in_order(jobs, student, folder, [], out, profile.lengths, workers=workers))
        assert [job.artifact.name for job, _ in done] == [a.name for a in profile.artifacts]  # the profile's order
        records[workers] = {record.name: (record.sha256, sha256(job.path)) for job, record in done}
    assert records[1] == records[2]
    assert all(recorded == actual for recorded, actual in records[2].values())


def test_an_export_failing_in_a_worker_raises_its_error_here(saved_student, tmp_path):
    student, folder = saved_student
    profile = profile_with(tmp_path, [
        {"format": "pte", "recipe": "int8-static", "runtime": "executorch", "delegate": "xnnpack"},
        {"format": "pte", "recipe": "fp32", "runtime": "executorch", "delegate": "xnnpack"},
    ])  # fmt: skip
    jobs = [ExportJob(a, tmp_path / f"{a.name}.pte") for a in profile.artifacts]
    # int8-static calibrates on real inputs; none are given, so the first export fails in its worker (and the
    # other, still exporting, is stopped)
    with pytest.raises(PteExportError, match="static int8 needs calibration data"):  # the worker's own error
        list(export_in_order(jobs, student, folder, [], tmp_path, profile.lengths, workers=2))
