"""Shared fixtures: tiny real XLNet teachers saved through transformers' save_pretrained, and small real data."""

from __future__ import annotations

import os
import random

import pytest
import torch

import toolkit.export_workers
from toolkit.data import DEMO_DEV, DEMO_TRAIN, load_labelled
from toolkit.profiles import load_profile

# In-process pipeline runs export in this process: a tiny student exports in seconds, less than two worker processes
# take to import the exporters. The worker pool is exercised by tests/test_export_workers.py and by every test that
# runs the command line in a subprocess (which keeps the default).
toolkit.export_workers.DEFAULT_WORKERS = 1


def pytest_configure(config):
    """Under pytest-xdist each worker's torch (and the processes it starts) takes its share of the cores.

    Two workers each running torch's default of one thread per core oversubscribe the machine, and OpenMP threads
    that wait spin: a tiny-model test that takes 10 s alone took 80 s beside another worker.
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def save_tiny_teacher(folder, n_layer: int = 4, d_model: int = 32, seed: int = 0, num_labels: int = 2):
    """A random tiny XLNetForSequenceClassification with the real XLNet tokenizer, saved as a user would."""
    from transformers import XLNetConfig, XLNetForSequenceClassification

    from toolkit.tokenizer import XLNetTextEncoder, build_xlnet_tokenizer

    torch.manual_seed(seed)
    names = ["negative", "positive"] if num_labels == 2 else [f"class{i}" for i in range(num_labels)]
    config = XLNetConfig(
        vocab_size=32000, d_model=d_model, n_layer=n_layer, n_head=4, d_inner=2 * d_model, num_labels=num_labels,
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        mem_len=None, use_mems_eval=False, architectures=["XLNetForSequenceClassification"],
    )
    XLNetForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    XLNetTextEncoder(build_xlnet_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def small_data():
    train = load_labelled(DEMO_TRAIN).subset(list(range(192)))
    dev = load_labelled(DEMO_DEV, label_names=train.label_names).subset(list(range(64)))
    return train, dev


@pytest.fixture(scope="session")
def short_profile():
    """The arm64-cpu profile at sequence length 32, so tiny students export in seconds."""
    return load_profile("arm64-cpu").model_copy(update={"sequence_length": 32})


def random_unicode_texts(count: int = 2000, seed: int = 1234) -> list[str]:
    """Random strings over characters that exercise every normalisation and segmentation rule of the tokenizer.

    One pool and seed for every tokenizer implementation's random parity test (Python app, C++ app).
    """
    pool = list("abc XYZ 019,.()\"'`-–£€<>\t\n\r") + ["<s>", "<sep>", "<mask>", "``", "''", "▁"] + [
        chr(c) for c in (0xA0, 0x200B, 0x200C, 0x200D, 0xFEFF, 0x301, 0x7FD, 0x1F3FB, 0xE0061, 0x600, 0x110BD, 0xE33,
                         0x1100, 0x1161, 0xAC00, 0xFF21, 0xFB01, 0x2028, 0x85, 0x3000, 0x1F600, 0x4E2D, 0x627, 0xE9,
                         0x212B, 0xFDFA, 0x3392, 0x0B, 0x7F, 0xAD, 0x2060, 0xFE0F, 0x1F1EB, 0xFF9E, 0xE35, 0x93F)]
    rng = random.Random(seed)
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 25))) for _ in range(count)]
