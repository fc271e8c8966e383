"""A small but real bundle, laid out exactly like an export writes one, for tests of the apps that consume bundles.

    build_tiny_bundle(out_dir) -> out_dir/
        manifest.json   labels, student config (seq_len, mask_input, ...) and one record per artifact
        labels.json     ["negative", "positive"]
        tokenizer.json  the portable tokenizer of a trimmed vocabulary (student ids)
        selftest.json   golden texts, their ids and each model's host logits (toolkit/selftest.py)
        models/pte-fp32.pte, models/tflite-fp32.tflite

The student is random (seeded) and tiny (1 layer, d_model 32, seq_len 32), so the exports are quick. Its vocabulary is
trimmed to the pieces some SST-2 dev sentences use, as a real distillation run does, so apps see student ids.
Both models are fp32: the same runtime on an emulated ARM CPU then agrees with the host to ~1e-6, so labels can be
compared exactly. The manifest holds only the fields apps read; the exporters' full records carry more.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from toolkit.files import PROJECT_ROOT, atomic_write_json
from toolkit.manifest import methods_json, specs_json
from toolkit.profiles import Artifact, load_profile
from toolkit.registry import get_backend
from toolkit.selftest import build_selftest, write_selftest
from toolkit.student import FixedLengthClassifier, StudentConfig, XLNetStudent, input_specs, model_inputs, output_specs
from toolkit.tokenizer import VocabMap, XLNetTextEncoder, build_xlnet_tokenizer, collect_used_ids

SST2_DEV = PROJECT_ROOT / "toolkit" / "assets" / "sst2" / "dev.tsv"
LABELS = ["negative", "positive"]
SEQ_LEN = 32
LENGTHS = (16, SEQ_LEN)  # length buckets: one method/signature each; texts up to 14 words run at 16
VOCAB_SENTENCES = 300  # the trimmed vocabulary comes from these; later dev sentences exercise unseen words
# selftest.json's golden texts: two dev sentences, one with words outside the trimmed vocabulary, and an awkward one.
SELFTEST_TEXTS = ["it 's a charming and often affecting journey . ", "unflinchingly bleak and desperate ",
                  "Café naïve façade : a résumé of crème brûlée", "😊 great fun 👍🏽 ❤️ 生活"]  # fmt: skip


def sst2_dev_sentences() -> list[str]:
    """The 872 SST-2 dev sentences, in file order."""
    with open(SST2_DEV, encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[0] for row in rows[1:]]


def tiny_encoder() -> XLNetTextEncoder:
    """The host encoder with a vocabulary trimmed to what the first SST-2 dev sentences use."""
    full = XLNetTextEncoder(build_xlnet_tokenizer())
    return full.with_vocab_map(VocabMap(collect_used_ids(full, sst2_dev_sentences()[:VOCAB_SENTENCES])))


def tiny_student(encoder: XLNetTextEncoder, mask_input: str, seed: int = 0) -> XLNetStudent:
    """A random 1-layer student whose two labels both occur.

    Random weights favour one label for every text; the head's bias is set to minus the mean logits over some dev
    sentences, so the labels split and a label mix-up in an app shows.
    """
    torch.manual_seed(seed)
    config = StudentConfig(vocab_size=encoder.vocab_size, d_model=32, n_layer=1, n_head=4, d_inner=64,
                           num_labels=len(LABELS), seq_len=SEQ_LEN, mask_input=mask_input, labels=LABELS)  # fmt: skip
    student = XLNetStudent(config).init_like_xlnet(std=0.2).eval()
    batch = encoder.encode(sst2_dev_sentences()[:64], seq_len=SEQ_LEN)
    with torch.no_grad():
        arrays = model_inputs(config, batch.input_ids, batch.attention_mask, batch.token_type_ids)
        logits = FixedLengthClassifier(student)(*[torch.from_numpy(a) for a in arrays])
        student.logits_proj.bias -= logits.mean(dim=0)
    return student


def bundle_encoder(bundle: Path) -> XLNetTextEncoder:
    """The HOST encoder with the bundle's trimmed vocabulary (tokenizer.json records the kept original ids).

    Rebuilt from the full XLNet tokenizer, so it is independent of the app tokenizers it is compared with.
    """
    spec = json.loads((Path(bundle) / "tokenizer.json").read_text(encoding="utf-8"))
    kept = spec["model"]["vocab_map"]["original_ids"]
    return XLNetTextEncoder(build_xlnet_tokenizer()).with_vocab_map(VocabMap(kept))


def host_inputs(bundle: Path, texts: list[str]) -> list[np.ndarray]:
    """The model inputs [N, L] the HOST builds for ``texts``: :func:`bundle_encoder` + ``model_inputs``."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text(encoding="utf-8"))
    config = StudentConfig(**manifest["student"]["config"])
    batch = bundle_encoder(bundle).encode(texts, seq_len=config.seq_len)
    return model_inputs(config, batch.input_ids, batch.attention_mask, batch.token_type_ids)


MaskInput = Literal["attention_mask", "additive_bias"]


def build_tiny_bundle(out_dir: Path | str, mask_input: MaskInput = "attention_mask") -> Path:
    """Export a tiny random student into a bundle folder at ``out_dir``; returns the folder.

    ``mask_input="additive_bias"`` gives the NNAPI-style signature (float ``mask_bias`` input instead of the int32
    ``attention_mask``). Takes about 25 s (two exports) on a 2-core machine.
    """
    bundle = Path(out_dir)
    (bundle / "models").mkdir(parents=True, exist_ok=True)
    encoder = tiny_encoder()
    encoder.export_portable(bundle / "tokenizer.json", SEQ_LEN, LENGTHS)
    student = tiny_student(encoder, mask_input)
    config = student.config

    artifacts = [
        Artifact(format="pte", recipe="fp32", runtime="executorch", delegate="xnnpack"),
        # tflite-runtime as the declared runtime: the exporter then also checks that 2.14 can load the file.
        Artifact(format="tflite", recipe="fp32", runtime="tflite-runtime", delegate="cpu"),
    ]
    records = []
    for artifact in artifacts:
        path = bundle / "models" / f"{artifact.name}.{artifact.format}"
        get_backend(artifact.format).export(student, artifact, path, None, LENGTHS)
        records.append({
            "name": artifact.name, "file": str(path.relative_to(bundle)), "format": artifact.format,
            "recipe": artifact.recipe, "runtime": artifact.runtime, "delegate": artifact.delegate,
            "inputs": specs_json(input_specs(config)), "outputs": specs_json(output_specs(config)),
            "methods": methods_json(config, LENGTHS),
            "valid": True,  # a real export sets this after its checks; the apps only read it to pick a default
        })  # fmt: skip

    atomic_write_json(bundle / "labels.json", LABELS)
    # The golden inputs an export writes (toolkit/selftest.py): dev texts, their ids, each model's host logits.
    selftest = build_selftest(bundle, records, encoder, config, SELFTEST_TEXTS, None, [None] * len(SELFTEST_TEXTS),
                              load_profile("raspberry-pi-4").validation.tolerances, lengths=LENGTHS)  # fmt: skip
    atomic_write_json(bundle / "manifest.json", {
        "profile": "tiny-test-bundle", "labels": LABELS, "student": {"config": asdict(config)}, "artifacts": records,
        "selftest": write_selftest(bundle, selftest),
    })  # fmt: skip
    return bundle
