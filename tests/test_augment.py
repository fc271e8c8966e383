"""Distillation recipe on tiny configs: teacher-labelled augmentation, transfer text, intermediate-layer losses."""

import json

import numpy as np
import pytest
import torch

from toolkit.augment import MASK_WORD, Augmenter, AugmentRecipe, word_neighbours
from toolkit.data import DataError, LabelledData, load_texts
from toolkit.distill import (
    DistillSettings,
    HiddenMatcher,
    attention_loss,
    distill,
    kd_loss,
    teacher_internals,
    trim_vocabulary,
)
from toolkit.student import XLNetStudent
from toolkit.teacher import fast_equivalent, load_teacher
from toolkit.tokenizer import XLNetTextEncoder


@pytest.fixture(scope="module")
def encoder():
    return XLNetTextEncoder()


def _neighbours_for(encoder, pairs: dict[str, str]) -> dict[int, int]:
    ids = encoder.tokenizer.convert_tokens_to_ids
    return {ids("\u2581" + a): ids("\u2581" + b) for a, b in pairs.items()}


def test_variants_are_seeded_per_text_and_use_only_the_three_operations(encoder):
    texts = ["a good movie with a great cast", "the plot is boring and slow", "funny"]
    data = LabelledData(texts, None, [1, 0, 1], ["negative", "positive"], "t")
    neighbours = _neighbours_for(encoder, {"good": "decent", "boring": "dull", "great": "fine"})
    make = lambda seed: Augmenter(AugmentRecipe(variants=4, seed=seed), encoder, neighbours).augment(data)  # noqa: E731
    first, again, other = make(0), make(0), make(1)
    assert first.texts == again.texts and first.labels == again.labels
    assert first.texts != other.texts
    # Per-text seeding: a text's variants do not depend on the texts around it.
    alone = Augmenter(AugmentRecipe(variants=4, seed=0), encoder, neighbours).variants(texts[0], 0)
    assert alone == [v for v, label in zip(first.texts, first.labels) if label == 1][: len(alone)]
    allowed = {"decent", "dull", "fine", MASK_WORD}
    for variant in first.texts:
        assert variant not in texts
        words = variant.split()
        # Every word is an original word of some text, a masked word or a listed neighbour.
        assert all(w in allowed or any(w in t.split() for t in texts) for w in words), variant
    assert len(set(first.texts)) == len(first.texts)  # no duplicates
    # With certain masking, every word is <unk>; with certain replacement, every word with a neighbour is swapped.
    masked = Augmenter(AugmentRecipe(variants=1, p_mask=1.0, p_ngram=0.0), encoder, neighbours).variants(texts[0], 0)
    assert masked == [" ".join([MASK_WORD] * 7)]
    swapped = Augmenter(AugmentRecipe(variants=1, p_mask=0.0, p_neighbour=1.0, p_ngram=0.0), encoder,
                        neighbours).variants(texts[0], 0)  # fmt: skip
    assert swapped == ["a decent movie with a fine cast"]
    ngram = Augmenter(AugmentRecipe(variants=3, p_mask=0.0, p_neighbour=0.0, p_ngram=1.0, max_ngram=3), encoder,
                      neighbours).variants(texts[0], 0)  # fmt: skip
    assert ngram and all(1 <= len(v.split()) <= 3 and v in texts[0] for v in ngram)


def test_neighbours_are_nearest_by_cosine_among_kept_whole_words(encoder):
    ids = encoder.tokenizer.convert_tokens_to_ids
    words = ["\u2581good", "\u2581decent", "\u2581bad", "\u2581awful", "\u2581movie"]
    word_ids = [ids(w) for w in words]
    embedding = torch.zeros(32000, 3)
    embedding[word_ids] = torch.tensor([[1.0, 0.1, 0], [0.9, 0.2, 0], [-1, 0, 0.1], [-5, 0, 0.3], [0, 0, 1]])
    kept = list(range(9)) + sorted(word_ids[:4])  # "movie" is not kept: never a neighbour
    table = word_neighbours(encoder, embedding, kept)
    name = dict(zip(word_ids, words))
    assert {name[a]: name[b] for a, b in table.items()} == {
        "\u2581good": "\u2581decent", "\u2581decent": "\u2581good", "\u2581bad": "\u2581awful", "\u2581awful": "\u2581bad",
    }


def test_kd_loss_leaves_unlabelled_rows_to_the_teacher():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    labelled = torch.tensor([True, True, True, False, False, False])
    base = kd_loss(student, teacher, labels, 2.0, 0.7, labelled)
    other_labels = labels.clone()
    other_labels[3:] = torch.tensor([2, 0, 1])
    assert kd_loss(student, teacher, other_labels, 2.0, 0.7, labelled).item() == pytest.approx(base.item())
    other_labels[0] = 1  # a labelled row's label does count
    assert kd_loss(student, teacher, other_labels, 2.0, 0.7, labelled).item() != pytest.approx(base.item())
    # All labelled: the classic mixture, equal to the call without a mask.
    everyone = torch.ones(6, dtype=torch.bool)
    assert kd_loss(student, teacher, labels, 2.0, 0.7, everyone).item() == pytest.approx(
        kd_loss(student, teacher, labels, 2.0, 0.7).item())  # fmt: skip
    # Unlabelled rows at equal logits: no loss at all.
    assert kd_loss(teacher, teacher, labels, 2.0, 0.7, ~everyone).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_loss_matches_heads_or_head_means_and_ignores_padding():
    torch.manual_seed(0)
    t = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    s = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert attention_loss([t], [t], mask).item() == pytest.approx(0.0, abs=1e-6)
    assert attention_loss([s], [t], mask).item() > 0.01
    # Padding query rows do not count.
    s_changed = s.clone()
    s_changed[0, :, :2] = torch.softmax(torch.randn(4, 2, 5), -1)
    assert attention_loss([s_changed], [t], mask).item() == pytest.approx(attention_loss([s], [t], mask).item())
    # Two student heads against four teacher heads: head means compared (zero when the means agree).
    t_mean = t.mean(1, keepdim=True)
    two_heads = torch.cat([t_mean, t_mean], dim=1)
    assert attention_loss([two_heads], [t], mask).item() == pytest.approx(0.0, abs=1e-6)


def test_hidden_matcher_scores_real_tokens_through_a_trainable_projection():
    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 8)]
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    same_width = HiddenMatcher(8, 8, 1)
    assert same_width([teacher[0].clone()], teacher, mask).item() == pytest.approx(0.0, abs=1e-7)  # identity init
    narrow = HiddenMatcher(4, 8, 1)
    student = [torch.randn(2, 5, 4, requires_grad=True)]
    loss = narrow(student, teacher, mask)
    loss.backward()
    assert loss.item() > 0 and narrow.projections[0].weight.grad.abs().sum() > 0
    assert student[0].grad[0, 0].abs().sum() == 0  # the padding position gets no gradient


def test_teacher_internals_are_the_teachers_own_states_and_attentions(tiny_teacher_dir, small_data):
    """The fast copy's hidden states and attentions at mapped layers equal transformers' for the same tokens."""
    teacher, encoder = load_teacher(tiny_teacher_dir)
    teacher.eval()
    batch = encoder.encode_padded_to_longest(small_data[0].texts[:4], None, max_len=32)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    types = torch.from_numpy(batch.token_type_ids)
    hidden, attentions = teacher_internals(fast_equivalent(teacher).eval(), ids, mask, types, [0, 3], "fp32", True)
    with torch.no_grad():
        reference = teacher.transformer(input_ids=ids.long(), attention_mask=mask.float(), token_type_ids=types.long(),
                                        use_mems=False, output_hidden_states=True, output_attentions=True)  # fmt: skip
    real = mask.bool()
    for got, layer in zip(hidden, [0, 3]):
        assert torch.allclose(got[real], reference.hidden_states[layer + 1][real], atol=1e-4)
    for got, layer in zip(attentions, [0, 3]):
        want = reference.attentions[layer]
        assert got.shape == want.shape
        assert torch.allclose(got.transpose(1, 2)[real], want.transpose(1, 2)[real], atol=1e-5)
        assert torch.allclose(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-5)


def test_student_attentions_leave_the_logits_unchanged(tiny_teacher_dir, small_data):
    teacher, encoder = load_teacher(tiny_teacher_dir)
    student = fast_equivalent(teacher).eval()
    batch = encoder.encode_padded_to_longest(small_data[0].texts[:3], None, max_len=32)
    ids, mask = torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)
    with torch.no_grad():
        plain = student(ids, mask)
        logits, hidden, attentions = student(ids, mask, output_hidden_states=True, output_attentions=True)
    assert torch.equal(plain, logits)
    assert len(hidden) == student.config.n_layer + 1 and len(attentions) == student.config.n_layer
    assert isinstance(student, XLNetStudent)


def test_transfer_texts_load_from_each_format_with_clear_errors(tmp_path):
    (tmp_path / "t.txt").write_text("first text\n\n  second text \n", encoding="utf-8")
    assert load_texts(tmp_path / "t.txt") == ["first text", "second text"]
    (tmp_path / "t.tsv").write_text("sentence\tlabel\nfirst\t1\nsecond\t0\n", encoding="utf-8")
    assert load_texts(tmp_path / "t.tsv") == ["first", "second"]
    (tmp_path / "t.jsonl").write_text(json.dumps({"review": "first"}) + "\n", encoding="utf-8")
    assert load_texts(tmp_path / "t.jsonl", "review") == ["first"]
    with pytest.raises(DataError, match="no column 'sentence'.*--text-column"):
        load_texts(tmp_path / "t.jsonl")
    with pytest.raises(DataError, match="no such transfer-text file"):
        load_texts(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no texts"):
        load_texts(tmp_path / "empty.txt")


def test_vocabulary_trimming_counts_transfer_text(encoder, small_data):
    train = small_data[0]
    plain = trim_vocabulary(encoder, train)
    extra = "zygomorphic xylophones"
    with_transfer = trim_vocabulary(encoder, train, extra_texts=[extra])
    new = set(with_transfer.kept_ids) - set(plain.kept_ids)
    assert new and new <= {i for ids in encoder.text_ids([extra]) for i in ids}


def test_augmented_and_transfer_labels_are_cached_and_a_resumed_run_matches(
    tiny_teacher_dir, small_data, short_profile, tmp_path, monkeypatch
):
    monkeypatch.setenv("XLNET_EDGE_CACHE", str(tmp_path / "cache"))
    train, dev = small_data
    transfer = [t + " indeed" for t in dev.texts]  # unlabelled text the labelled set does not hold
    settings = DistillSettings(epochs=2, batch_size=32, patience=5, augment=2, hidden_weight=1.0, attention_weight=0.5)
    kwargs = dict(n_layer=1, d_model=16, max_param_ratio=None, log=lambda *_: None, transfer=transfer)
    straight = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "a", settings, **kwargs)
    counts = straight.report["training_examples"]
    assert counts["labelled"] == len(train) and counts["transfer"] == len(transfer)
    assert len(train) < counts["augmented"] <= 2 * len(train)
    # One cached logits file per labelled set: the training texts, their variants, the transfer text.
    assert len(list((tmp_path / "cache" / "teacher-logits").glob("*.npy"))) == 3
    assert all("agreement" in h for h in straight.report["history"])
    assert straight.report["agreement"] is not None and 0.0 <= straight.report["agreement"] <= 1.0
    distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, stop_after_epochs=1, **kwargs)
    resumed = distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b", settings, resume=True, **kwargs)
    assert resumed.report["history"] == straight.report["history"]
    assert resumed.report["teacher_logits"]["seconds"] <= straight.report["teacher_logits"]["seconds"]
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(a["student"][k], b["student"][k]) for k in a["student"])
    assert all(torch.equal(a["matcher"][k], b["matcher"][k]) for k in a["matcher"])
    # Other variants (another count) are another training set: the checkpoint is refused, not mixed in.
    from toolkit.distill import DistillError

    with pytest.raises(DistillError, match="another teacher, data or student shape"):
        distill(tiny_teacher_dir, train, dev, short_profile, tmp_path / "b",
                DistillSettings(epochs=2, batch_size=32, augment=1), resume=True, **kwargs)  # fmt: skip
    assert np.isfinite(straight.report["student_dev_accuracy"])
