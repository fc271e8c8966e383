"""Loading a teacher: the real from_pretrained path, safetensors only, XLNet only; and training one from scratch."""

import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, XLNetForSequenceClassification

from conftest import save_tiny_teacher
from toolkit.teacher import TeacherError, TeacherRecipe, accuracy, load_teacher, predict_logits, train_teacher


def test_saved_tiny_xlnet_loads_back_with_identical_logits(tmp_path):
    folder = save_tiny_teacher(tmp_path / "t", n_layer=2)
    torch.manual_seed(0)
    original = XLNetForSequenceClassification.from_pretrained(folder).eval()  # transformers' own load
    model, encoder = load_teacher(folder)
    batch = encoder.encode(["a charming and often affecting journey .", "bleak"], seq_len=16)
    args = dict(
        input_ids=torch.from_numpy(batch.input_ids).long(),
        attention_mask=torch.from_numpy(batch.attention_mask).float(),
        token_type_ids=torch.from_numpy(batch.token_type_ids).long(),
        use_mems=False,
        return_dict=False,
    )
    with torch.no_grad():
        assert torch.equal(original(**args)[0], model(**args)[0])
    # The fast path (toolkit's implementation of the same math) agrees with transformers to 1e-5.
    fast = predict_logits(model, encoder, ["a charming and often affecting journey .", "bleak"])
    with torch.no_grad():
        assert np.abs(fast - model(**args)[0].numpy()).max() <= 1e-5


def test_non_xlnet_checkpoint_is_refused(tmp_path):
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "bert")
    with pytest.raises(TeacherError, match="'bert' checkpoint, not XLNet"):
        load_teacher(tmp_path / "bert")


def test_pickle_only_checkpoint_is_refused(tmp_path):
    folder = save_tiny_teacher(tmp_path / "t", n_layer=1)
    model = XLNetForSequenceClassification.from_pretrained(folder)
    for path in folder.glob("*.safetensors"):
        path.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(TeacherError, match=r"pickle weights \['pytorch_model.bin'\].*safetensors"):
        load_teacher(folder)


def test_missing_folder_config_and_head(tmp_path):
    with pytest.raises(TeacherError, match="no such folder"):
        load_teacher(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TeacherError, match="no config.json"):
        load_teacher(tmp_path / "empty")
    folder = save_tiny_teacher(tmp_path / "base", n_layer=1)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["XLNetLMHeadModel"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError, match="no XLNetForSequenceClassification head"):
        load_teacher(folder)


def test_train_teacher_from_scratch_saves_a_real_xlnet(tmp_path, small_data):
    train, dev = small_data
    recipe = TeacherRecipe(n_layer=2, d_model=32, n_head=4, d_inner=64, epochs=2, learning_rate=3e-3)
    card = train_teacher(train, dev, tmp_path / "teacher", recipe)
    model, encoder = load_teacher(tmp_path / "teacher")
    assert model.config.n_layer == 2 and model.config.id2label == {0: "negative", 1: "positive"}
    assert card["dev_accuracy"] == pytest.approx(accuracy(predict_logits(model, encoder, dev.texts), dev.labels))
    assert (tmp_path / "teacher" / "teacher_card.json").is_file()
    assert card["best_epoch"] in (1, 2)


def test_pickle_teacher_is_converted_only_on_explicit_opt_in(tiny_teacher_dir, tmp_path):
    """`toolkit teacher convert --trust-pickle` turns a pickle-only folder into one load_teacher accepts, same logits."""
    import shutil

    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from toolkit.cli import app

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_teacher_dir, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(TeacherError, match="--trust-pickle"):
        load_teacher(pickled)

    refused = CliRunner().invoke(app, ["teacher", "convert", str(pickled), str(tmp_path / "converted")])
    assert refused.exit_code == 2 and "pass --trust-pickle" in refused.output
    assert not (tmp_path / "converted").exists()

    done = CliRunner().invoke(app, ["teacher", "convert", str(pickled), str(tmp_path / "converted"), "--trust-pickle"])
    assert done.exit_code == 0, done.output
    original, encoder = load_teacher(tiny_teacher_dir)
    converted, _ = load_teacher(tmp_path / "converted")
    ids = torch.tensor([encoder.encode(["a fine film"], seq_len=16).input_ids[0]], dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(original(ids).logits, converted(ids).logits)
