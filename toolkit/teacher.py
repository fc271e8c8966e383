"""The XLNet teacher: load a user's fine-tuned checkpoint safely, or train the demo teacher.

Loading goes through transformers' real ``from_pretrained`` path, from local files only, safetensors only and never
with remote code: a pickle checkpoint (``pytorch_model.bin``) can execute code when loaded, so it is refused with the
command that converts it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toolkit.data import DEMO_DEV, DEMO_TRAIN, LabelledData, bucketed_batches, display_names, load_labelled
from toolkit.errors import ToolkitError
from toolkit.files import atomic_write_json, cache_dir, sha256_file
from toolkit.student import XLNetStudent, student_from_xlnet, xlnet_state_from_student
from toolkit.tokenizer import XLNetTextEncoder, build_xlnet_tokenizer

TEACHER_CARD = "teacher_card.json"


class TeacherError(ToolkitError, ValueError):
    """A teacher folder that cannot be used; the message says why and what to do."""


def _check_teacher_folder(folder: Path) -> dict:
    """Refuse early, with a clear reason, anything that is not a local safetensors XLNet classifier."""
    if not folder.is_dir():
        raise TeacherError(f"{folder}: no such folder (expected a Hugging Face checkpoint folder)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TeacherError(f"{folder}: no config.json, so this is not a Hugging Face checkpoint folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TeacherError(f"{config_path}: not valid JSON ({err}); the checkpoint folder is corrupt") from err
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise TeacherError(
            f"{config_path} asks for custom model code (auto_map: {config.get('auto_map')}); the toolkit never runs "
            "code shipped with a checkpoint. Save the model as a standard XLNetForSequenceClassification "
            "(model_type 'xlnet', no auto_map) and try again"
        )
    model_type = config.get("model_type")
    if model_type != "xlnet":
        raise TeacherError(f"{folder}: this is a '{model_type}' checkpoint, not XLNet; the toolkit distils XLNet only")
    architectures = config.get("architectures") or []
    if architectures and "XLNetForSequenceClassification" not in architectures:
        raise TeacherError(
            f"{folder}: architectures {architectures} has no XLNetForSequenceClassification head; "
            "fine-tune a sequence classifier first"
        )
    has_safetensors = any(folder.glob("*.safetensors"))
    if not has_safetensors:
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
        hint = (
            f" Found pickle weights {pickles}: pickle files can run code when loaded, so they are refused. If you "
            f"trust where they came from, convert them once: `toolkit teacher convert {folder} "
            f"{folder}-safetensors --trust-pickle` (loads tensors only, writes safetensors), then pass that folder"
            if pickles
            else ""
        )
        raise TeacherError(f"{folder}: no *.safetensors weights.{hint}")
    return config


def load_teacher(folder: Path | str):
    """(model in eval mode, encoder) from a fine-tuned ``XLNetForSequenceClassification`` folder."""
    from transformers import XLNetForSequenceClassification

    folder = Path(folder)
    _check_teacher_folder(folder)
    try:
        model, info = XLNetForSequenceClassification.from_pretrained(
            folder,
            use_safetensors=True,
            trust_remote_code=False,
            local_files_only=True,
            output_loading_info=True,
        )
    except Exception as err:  # transformers/safetensors raise many types for a damaged folder
        raise TeacherError(
            f"{folder}: the checkpoint could not be loaded ({type(err).__name__}: {str(err)[:300]}); the weights are "
            "corrupt, truncated or do not match config.json. Re-save it with save_pretrained(safe_serialization=True)"
        ) from err
    missing = [k for k in info.get("missing_keys", []) if "logits_proj" in k or "sequence_summary" in k]
    if missing:
        raise TeacherError(f"{folder}: the classification head is not in the checkpoint ({missing}); fine-tune first")
    model.config.use_mems_eval = False
    model.config.mem_len = None
    return model.eval(), load_encoder(folder)


def convert_pickle_teacher(source: Path | str, target: Path | str) -> Path:
    """Explicit opt-in for a pickle-only checkpoint: load it tensors-only and save it as safetensors.

    transformers loads ``pytorch_model.bin`` with ``torch.load(weights_only=True)``, which refuses pickled code
    objects; the result is a normal safetensors folder that :func:`load_teacher` accepts.
    """
    from transformers import XLNetForSequenceClassification

    source, target = Path(source), Path(target)
    if target.exists() and any(target.iterdir()):
        raise TeacherError(f"{target} is not empty; choose a new folder for the converted teacher")
    config_path = source / "config.json"
    if not config_path.is_file():
        raise TeacherError(f"{source}: no config.json, so this is not a Hugging Face checkpoint folder")
    if json.loads(config_path.read_text(encoding="utf-8")).get("auto_map"):
        raise TeacherError(f"{config_path} asks for custom model code; the toolkit never runs it")
    try:
        model = XLNetForSequenceClassification.from_pretrained(
            source, use_safetensors=False, trust_remote_code=False, local_files_only=True
        )
    except Exception as err:
        raise TeacherError(f"{source}: could not load the pickle weights tensors-only ({err})") from err
    model.save_pretrained(target, safe_serialization=True)
    encoder = load_encoder(source)
    encoder.save_pretrained(target)
    return target


def load_encoder(folder: Path) -> XLNetTextEncoder:
    """The teacher's own tokenizer when the folder has one, else the bundled xlnet-base-cased vocabulary."""
    try:
        return XLNetTextEncoder.from_pretrained(folder)
    except (OSError, ValueError, FileNotFoundError):
        return XLNetTextEncoder(build_xlnet_tokenizer())


FAST_PATH_MAX_LEN = 512


def fast_equivalent(model) -> "XLNetStudent":
    """The same network in the toolkit's own XLNet implementation (logits equal to 1e-5, ~10x faster on CPU).

    transformers' XLNet spends most of its CPU time in einsum layouts; tests/test_student.py pins the equality.
    """
    return student_from_xlnet(model, seq_len=FAST_PATH_MAX_LEN)


@torch.no_grad()
def predict_logits(model, encoder: XLNetTextEncoder, texts, pairs=None, batch_size: int = 64, desc="teacher"):
    """Logits [N, C] of an HF XLNet classifier (run through its fast equivalent), batches padded to their longest."""
    fast = fast_equivalent(model).eval() if not isinstance(model, XLNetStudent) else model.eval()
    device = next(fast.parameters()).device
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    out = np.zeros((len(texts), fast.config.num_labels), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = encoder.encode_padded_to_longest(
            [texts[i] for i in idx], None if pairs is None else [pairs[i] for i in idx], max_len=FAST_PATH_MAX_LEN
        )
        logits = fast(
            torch.from_numpy(batch.input_ids).to(device),
            torch.from_numpy(batch.attention_mask).to(device),
            torch.from_numpy(batch.token_type_ids).to(device),
        )
        out[idx] = logits.float().cpu().numpy()
    return out


def accuracy(logits: np.ndarray, labels) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


# ---------------------------------------------------------------------------------------------------------------
# Training a teacher from random initialisation (no pretrained XLNet can be downloaded here)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherRecipe:
    """Shape and schedule of a from-scratch XLNet classifier. The defaults are the demo teacher."""

    n_layer: int = 6
    d_model: int = 128
    n_head: int = 4
    d_inner: int = 512
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    dropout: float = 0.1
    max_len: int = 64
    seed: int = 0


def warmup_linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up, then linear decay to zero: the schedule of both training loops (teacher, distillation)."""
    warmup = max(1, int(total_steps * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_teacher(
    train: LabelledData, dev: LabelledData, out_dir: Path | str, recipe: TeacherRecipe = TeacherRecipe()
) -> dict:
    """Train an XLNet classifier from scratch on ``train``, keep the best dev epoch, ``save_pretrained`` it."""
    from transformers import XLNetConfig, XLNetForSequenceClassification

    _seed_everything(recipe.seed)
    encoder = XLNetTextEncoder(build_xlnet_tokenizer())
    names = display_names(train.label_names)
    config = XLNetConfig(
        vocab_size=encoder.vocab_size,
        d_model=recipe.d_model,
        n_layer=recipe.n_layer,
        n_head=recipe.n_head,
        d_inner=recipe.d_inner,
        dropout=recipe.dropout,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        mem_len=None,
        use_mems_eval=False,
        use_mems_train=False,
        pad_token_id=5,
        architectures=["XLNetForSequenceClassification"],
    )
    hf_model = XLNetForSequenceClassification(config)  # transformers' own random initialisation
    device = "cuda" if torch.cuda.is_available() else "cpu"  # a GPU when there is one; the demo runs on 2 CPU cores
    model = fast_equivalent(hf_model).to(device)  # trained in the toolkit's implementation of the same math, saved as HF
    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total_steps = steps_per_epoch * recipe.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = warmup_linear_schedule(optimizer, total_steps, recipe.warmup_ratio)
    labels = torch.tensor(train.labels)
    out_dir = Path(out_dir)
    best = {"dev_accuracy": -1.0}
    started = time.time()
    progress = tqdm(total=total_steps, desc="teacher train", unit="step")
    lengths = [len(ids) for ids in encoder.text_ids(train.texts)]
    for epoch in range(recipe.epochs):
        model.train()
        for idx in bucketed_batches(lengths, recipe.batch_size, seed=recipe.seed + epoch):
            batch = encoder.encode_padded_to_longest(
                [train.texts[i] for i in idx],
                None if train.pairs is None else [train.pairs[i] for i in idx],
                max_len=recipe.max_len,
            )
            logits = model(
                torch.from_numpy(batch.input_ids).to(device),
                torch.from_numpy(batch.attention_mask).to(device),
                torch.from_numpy(batch.token_type_ids).to(device),
            )
            loss = torch.nn.functional.cross_entropy(logits, labels[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            progress.update(1)
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", best_dev=f"{best['dev_accuracy']:.3f}")
        dev_accuracy = accuracy(predict_logits(model, encoder, dev.texts, dev.pairs), dev.labels)
        if dev_accuracy > best["dev_accuracy"]:
            best = {"dev_accuracy": dev_accuracy, "epoch": epoch + 1}
            _save_as_transformers(model, hf_model, out_dir)
            encoder.save_pretrained(out_dir)
        progress.set_postfix(epoch=epoch + 1, dev=f"{dev_accuracy:.3f}", best_dev=f"{best['dev_accuracy']:.3f}")
    progress.close()
    card = {
        "recipe": asdict(recipe),
        "train": train.summary(),
        "dev": dev.summary(),
        "dev_accuracy": best["dev_accuracy"],
        "best_epoch": best["epoch"],
        "parameters": sum(p.numel() for p in hf_model.parameters()),
        "train_seconds": round(time.time() - started, 1),
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(out_dir / TEACHER_CARD, card)
    return card


def _save_as_transformers(model: XLNetStudent, hf_model, out_dir: Path) -> None:
    """Copy the trained weights into the transformers model and ``save_pretrained`` it (safetensors)."""
    state = {k: v.detach().cpu() for k, v in xlnet_state_from_student(model).items()}
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"transformer.mask_emb"}:
        raise RuntimeError(f"teacher weights do not map onto XLNet: missing {missing}, unexpected {unexpected}")
    hf_model.save_pretrained(out_dir, safe_serialization=True)


def demo_teacher(recipe: TeacherRecipe = TeacherRecipe(), log=print) -> Path:
    """The demo teacher folder, trained on the bundled SST-2 sample once and cached (keyed by data + recipe)."""
    tokenizer = build_xlnet_tokenizer().backend_tokenizer.to_str()
    key = hashlib.sha256(
        "|".join([sha256_file(DEMO_TRAIN), sha256_file(DEMO_DEV), json.dumps(asdict(recipe), sort_keys=True), tokenizer])
        .encode()
    ).hexdigest()[:12]
    folder = cache_dir("demo-teacher") / key
    if (folder / TEACHER_CARD).is_file():
        return folder
    log(f"training the demo teacher (cached afterwards in {folder})")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    train = load_labelled(DEMO_TRAIN)
    dev = load_labelled(DEMO_DEV, label_names=train.label_names)
    card = train_teacher(train, dev, partial, recipe)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # only a finished teacher ever appears under the cache key
    log(f"demo teacher: dev accuracy {card['dev_accuracy']:.4f}, {card['train_seconds']} s")
    return folder
