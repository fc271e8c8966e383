"""A user's checkpoint as transformers writes it: every tokenizer layout, dtype, sharding and label naming.

Each teacher here is a random ``XLNetForSequenceClassification`` written by transformers' own ``save_pretrained``
(never by the toolkit), in the layouts fine-tuned checkpoints really have. They are loaded, refused or matched up
front by preflight, and the issue's two real failures (no tokenizer files; ``LABEL_i`` names with 0/1 data) run
through the real export path.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from toolkit.data import LabelledData
from toolkit.distill import DistillSettings
from toolkit.labels import LabelMismatchError, match_labels
from toolkit.pipeline import RunSpec, export_bundle, preflight
from toolkit.teacher import TeacherError, inspect_teacher, load_teacher, predict_logits
from toolkit.tokenizer import XLNetTextEncoder, build_xlnet_tokenizer, spiece_model_path

from test_pipeline import tiny_profile

TEXTS = ["a charming and often affecting journey .", "unflinchingly bleak and desperate", "9,000 £ (ok) -- yes"]


def write_checkpoint(folder, tokenizer="none", dtype=torch.float32, shard=False, names=None, num_labels=2, seed=0):
    """A random XLNet classifier written by transformers' save_pretrained in one of the layouts users have.

    tokenizer: "fast" (tokenizer.json + spiece.model, as the hub's xlnet-base-cased), "slow" (spiece.model +
    tokenizer_config.json only) or "none"; names: id2label names (None: transformers' LABEL_i defaults).
    """
    from transformers import XLNetConfig, XLNetForSequenceClassification

    torch.manual_seed(seed)
    extra = {} if names is None else {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    config = XLNetConfig(vocab_size=32000, d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=num_labels, **extra)
    model = XLNetForSequenceClassification(config).to(dtype)
    model.save_pretrained(folder, safe_serialization=True, **({"max_shard_size": "1MB"} if shard else {}))
    if tokenizer == "fast":
        build_xlnet_tokenizer().save_pretrained(str(folder))
        shutil.copy(spiece_model_path(), folder / "spiece.model")
    elif tokenizer == "slow":
        shutil.copy(spiece_model_path(), folder / "spiece.model")
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLNetTokenizer"}))
    return folder


def reference_logits(folder, texts):
    """transformers' own forward pass in fp32 on the bundled tokenizer's ids: what the toolkit must reproduce."""
    from transformers import XLNetForSequenceClassification

    model = XLNetForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    batch = XLNetTextEncoder().encode(texts, seq_len=24)
    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(batch.input_ids).long(),
            attention_mask=torch.from_numpy(batch.attention_mask).float(),
            token_type_ids=torch.from_numpy(batch.token_type_ids).long(),
            use_mems=False,
        ).logits.numpy()


LAYOUTS = {
    "fast tokenizer": dict(tokenizer="fast"),
    "slow spiece.model only": dict(tokenizer="slow"),
    "no tokenizer files": dict(tokenizer="none"),
    "fp16 weights": dict(dtype=torch.float16),
    "bf16 weights": dict(dtype=torch.bfloat16),
    "sharded safetensors": dict(shard=True),
    "sharded bf16, no tokenizer": dict(shard=True, dtype=torch.bfloat16),
    "named labels": dict(names=["negative", "positive"]),
    "150 labels": dict(num_labels=150),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_loads_with_the_teachers_own_logits(layout, tmp_path):
    folder = write_checkpoint(tmp_path / "t", **LAYOUTS[layout])
    if LAYOUTS[layout].get("shard"):
        assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) > 1
    info = inspect_teacher(folder)
    expected_source = {"fast": "tokenizer.json", "slow": "spiece.model"}.get(LAYOUTS[layout].get("tokenizer"), "bundled")
    assert info.tokenizer_source == expected_source
    model, encoder = load_teacher(folder)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16/bf16 files are computed in fp32
    bundled = XLNetTextEncoder()
    assert encoder.text_ids(TEXTS) == bundled.text_ids(TEXTS)  # every layout tokenizes like xlnet-base-cased
    ours = predict_logits(model, encoder, TEXTS)
    assert ours.shape == (3, LAYOUTS[layout].get("num_labels", 2))
    np.testing.assert_allclose(ours, reference_logits(folder, TEXTS), atol=2e-5)


def test_a_tokenizer_that_does_not_fit_the_teacher_is_refused(tmp_path):
    folder = write_checkpoint(tmp_path / "t")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": 32100}))
    with pytest.raises(TeacherError, match="does not fit an XLNet teacher of vocab_size 32100"):
        inspect_teacher(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{ not json")
    with pytest.raises(TeacherError, match="tokenizer files could not be read.*delete them"):
        inspect_teacher(folder)


# ---- labels: one rule -------------------------------------------------------------------------------------------


def test_label_rule_by_name_by_index_and_refusal():
    named = match_labels(["negative", "positive"], ["positive", "negative"])
    assert named.rule == "by name" and named.head_index == {"positive": 1, "negative": 0}
    assert match_labels(["Negative", "Positive"], ["negative"]).head_index == {"negative": 0}  # case, subset
    defaults = match_labels(["LABEL_0", "LABEL_1"], ["0", "1"])
    assert defaults.rule == "by index" and defaults.names == ["0", "1"]
    assert match_labels(["LABEL_0", "LABEL_1"], ["LABEL_1", "LABEL_0"]).head_index == {"LABEL_1": 1, "LABEL_0": 0}
    assert match_labels(["neg", "pos"], ["0", "1"]).names == ["neg", "pos"]  # indices into a named head
    many = match_labels([f"LABEL_{i}" for i in range(151)], [str(i) for i in range(151)])
    assert len(many.names) == 151 and many.head_index["150"] == 150
    with pytest.raises(LabelMismatchError, match=r"\['negative', 'positive'\].*LABEL_0.*default names"):
        match_labels(["LABEL_0", "LABEL_1"], ["negative", "positive"])
    with pytest.raises(LabelMismatchError, match=r"\['cat', 'dog'\].*\['negative', 'positive'\]"):
        match_labels(["negative", "positive"], ["cat", "dog"])
    with pytest.raises(LabelMismatchError, match="label the data with output indices 0..1"):
        match_labels(["LABEL_0", "LABEL_1"], ["0", "1", "2"])


def test_matching_reorders_the_datas_labels_to_the_heads_outputs():
    data = LabelledData(["a", "b", "c"], None, [0, 1, 1], ["neg", "pos"], "x.tsv")
    matched = match_labels(["pos", "neg"], data.label_names).apply(data)
    assert matched.label_names == ["pos", "neg"] and matched.labels == [1, 0, 0]


# ---- preflight and the real export path -------------------------------------------------------------------------


def _spec(tmp_path, teacher, data, **kw):
    """The arm64-cpu profile, tiny, with its fp32 artifact of each format: what a checkpoint's layout can break is
    loading, labels and the tokenizer, not a quantization recipe (those have their own tests)."""
    train, dev = data
    profile = tiny_profile(tmp_path, "arm64-cpu")
    profile = profile.model_copy(update={"artifacts": [a for a in profile.artifacts if a.recipe == "fp32"]})
    return RunSpec(profile, train, dev, teacher, DistillSettings(epochs=1), emulate=False, **kw)


def test_label_mismatch_is_refused_before_any_training(tmp_path, small_data):
    """Default LABEL_i names and data labelled by words: the trained order is unknown, so both lists are shown."""
    teacher = write_checkpoint(tmp_path / "t")
    worded = [dataclasses.replace(d, label_names=["negative", "positive"]) for d in small_data]
    with pytest.raises(LabelMismatchError, match=r"\['negative', 'positive'\].*\['LABEL_0', 'LABEL_1'\]"):
        preflight(_spec(tmp_path, teacher, worded))
    with pytest.raises(LabelMismatchError):
        export_bundle(_spec(tmp_path, teacher, worded), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before the output folder, the teacher or any distillation


def test_preflight_validates_the_manifest_it_would_write(tmp_path, small_data):
    teacher = write_checkpoint(tmp_path / "t", names=["negative", "positive"])
    plan = preflight(_spec(tmp_path, teacher, small_data))
    assert plan.student.labels == plan.labels.names == ["negative", "positive"]
    assert plan.teacher.tokenizer_source == "bundled" and plan.student.vocab_size < 32000


def test_transformers_teacher_without_tokenizer_and_default_labels_exports(tmp_path, small_data, monkeypatch):
    """The issue's two failures: no tokenizer files (stopped at once) and LABEL_i with 0/1 data (failed last).

    The run is first made to fail in its last stage (the manifest write); the same command then resumes with every
    finished stage kept: nothing is distilled or exported again.
    """
    import toolkit.pipeline as pipeline_mod
    from toolkit.manifest_schema import ManifestError

    teacher = write_checkpoint(tmp_path / "t", shard=True, dtype=torch.bfloat16)
    real_write = pipeline_mod.write_manifest_and_report

    def fails_late(manifest, bundle):
        raise ManifestError(["$.labels: simulated late failure"])

    monkeypatch.setattr(pipeline_mod, "write_manifest_and_report", fails_late)
    first = []
    with pytest.raises(ManifestError):
        export_bundle(_spec(tmp_path, teacher, small_data), tmp_path / "out", log=first.append)
    monkeypatch.setattr(pipeline_mod, "write_manifest_and_report", real_write)
    logs = []
    manifest = export_bundle(_spec(tmp_path, teacher, small_data), tmp_path / "out", log=logs.append)
    text = "\n".join(map(str, logs))
    assert "already distilled" in text and "already exported and checked" in text
    text = "\n".join(map(str, first))
    assert text.count("bundled xlnet-base-cased vocabulary") == 1
    assert "by index" in text
    assert manifest["labels"] == manifest["student"]["config"]["labels"] == ["0", "1"]
    assert manifest["teacher"]["tokenizer"] == "bundled" and manifest["teacher"]["stand_in"] is False
    assert manifest["teacher"]["label_match"] == {"rule": "by index", "data_to_output": {"0": 0, "1": 1}}
    assert manifest["validation"]["passed"]


# ---- nothing lost: resumable teacher logits, a late failure resumes, own data without a teacher -------------------


def test_interrupted_teacher_logits_resume_where_they_stopped(tmp_path, monkeypatch, small_data):
    import toolkit.teacher as teacher_mod

    model, encoder = load_teacher(write_checkpoint(tmp_path / "t", tokenizer="fast"))
    texts = small_data[0].texts
    expected = predict_logits(model, encoder, texts, max_tokens=256)
    fast = teacher_mod.fast_equivalent(model)
    calls = {"n": 0}

    class Interrupting(torch.nn.Module):
        """The fast model, killed (KeyboardInterrupt) on its 4th batch of the first run."""

        def __init__(self, limit):
            super().__init__()
            self.inner, self.config, self.limit = fast, fast.config, limit

        def forward(self, *args):
            calls["n"] += 1
            if calls["n"] == self.limit:
                raise KeyboardInterrupt
            return self.inner(*args)

    monkeypatch.setattr(teacher_mod, "FLUSH_SECONDS", 0.0)
    cache = tmp_path / "cache" / "logits.npy"
    monkeypatch.setattr(teacher_mod, "fast_equivalent", lambda m: Interrupting(limit=4))
    with pytest.raises(KeyboardInterrupt):
        predict_logits(model, encoder, texts, max_tokens=256, cache=cache)
    assert not cache.exists() and json.loads(cache.with_name("logits.progress.json").read_text())["batches_done"] == 3
    calls["n"] = 0
    monkeypatch.setattr(teacher_mod, "fast_equivalent", lambda m: Interrupting(limit=-1))
    resumed = predict_logits(model, encoder, texts, max_tokens=256, cache=cache)
    lengths = [teacher_mod.padded_length(len(i) + 2) for i in encoder.text_ids(texts)]
    batches = len(teacher_mod.length_batches(lengths, 256))
    assert calls["n"] == batches - 3  # only the batches the first run had not finished
    np.testing.assert_allclose(resumed, expected, atol=1e-6)
    assert cache.is_file() and not cache.with_name("logits.progress.json").exists()
    calls["n"] = 0
    np.testing.assert_array_equal(predict_logits(model, encoder, texts, cache=cache), resumed)
    assert calls["n"] == 0  # a finished cache is read, not recomputed


def test_own_data_without_a_teacher_trains_a_stand_in_on_it(tmp_path, monkeypatch):
    """`--data intents.tsv` without `--teacher`: a stand-in trained on those 7 labels, labelled as such."""
    from toolkit.data import DEMO_TRAIN, load_labelled
    from toolkit.pipeline import stage_teacher
    from toolkit.teacher import TeacherRecipe
    import toolkit.teacher as teacher_mod

    monkeypatch.setenv("XLNET_EDGE_CACHE", str(tmp_path / "cache"))
    rows = [f"{t}\tintent{i % 7}" for i, t in enumerate(load_labelled(DEMO_TRAIN).texts[:140])]
    for name in ("train", "dev"):
        (tmp_path / f"{name}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    train = load_labelled(tmp_path / "train.tsv")
    dev = load_labelled(tmp_path / "dev.tsv", label_names=train.label_names)
    spec = RunSpec(tiny_profile(tmp_path, "arm64-cpu"), train, dev, None, DistillSettings(epochs=1), emulate=False)
    plan = preflight(spec)  # the stand-in's head is predicted from the data: 7 outputs named like the data
    assert plan.teacher is None and plan.labels.names == [f"intent{i}" for i in range(7)]
    tiny = TeacherRecipe(n_layer=1, d_model=32, n_head=2, d_inner=64, epochs=1)
    monkeypatch.setattr(teacher_mod.demo_teacher, "__defaults__", (None, None, tiny, print))
    logs = []
    folder, cached = stage_teacher(spec, logs.append)
    assert not cached and "stand-in XLNet teacher from random initialisation on train.tsv" in "\n".join(logs)
    info = inspect_teacher(folder, stand_in=True)
    assert info.label_names == plan.labels.names and teacher_mod.is_stand_in(folder)
    assert stage_teacher(spec, logs.append) == (folder, True)  # cached by the data's content


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_through_the_real_export_path(layout, tmp_path, small_data):
    """Each layout from preflight to a checked bundle (one fp32 .pte keeps it short; CI runs these: -m slow)."""
    options = LAYOUTS[layout]
    teacher = write_checkpoint(tmp_path / "t", **options)
    train, dev = small_data
    if options.get("num_labels", 2) > 2:  # a 150-output head trained on data that uses 3 of its outputs
        train = dataclasses.replace(train, labels=[i % 3 for i in range(len(train))], label_names=["0", "1", "2"])
        dev = dataclasses.replace(dev, labels=[i % 3 for i in range(len(dev))], label_names=["0", "1", "2"])
    spec = _spec(tmp_path, teacher, (train, dev))
    spec = dataclasses.replace(spec, profile=spec.profile.model_copy(
        update={"artifacts": [a for a in spec.profile.artifacts if a.name == "pte-fp32"]}))
    manifest = export_bundle(spec, tmp_path / "out")
    assert manifest["validation"]["passed"] and len(manifest["artifacts"]) == 1
    assert len(manifest["labels"]) == options.get("num_labels", 2) == manifest["student"]["config"]["num_labels"]
    assert manifest["labels"] == (options.get("names") or [str(i) for i in range(len(manifest["labels"]))])
    assert manifest["teacher"]["tokenizer"] == inspect_teacher(teacher).tokenizer_source
