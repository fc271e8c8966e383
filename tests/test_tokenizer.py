"""Host tokenizer: the rebuilt spiece.model, transformers' pinned ids, XLNet conventions, vocab maps, export."""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from toolkit import tokenizer as T

ROOT = Path(__file__).resolve().parent.parent

# transformers tests/models/xlnet/test_tokenization_xlnet.py (xlnet/xlnet-base-cased): the mixin's default input
# string and its expected ids, and test_tokenizer_integration's three sequences (padding=True).
PINNED_TEXT = """This is a test 😊
I was born in 92000, and this is falsé.
生活的真谛是
Hi  Hello
Hi   Hello

 
  
 Hello
<s>
hi<s>there
The following string should be properly encoded: Hello.
But ird and ปี   ird   ด
Hey how are you doing"""
PINNED_IDS = [122, 27, 24, 934, 17, 0, 35, 30, 1094, 25, 664, 7701, 19, 21, 52, 27, 4417, 9, 17, 0, 4036, 17, 11368,
              4036, 17, 11368, 17, 11368, 1, 17, 2582, 1, 105, 32, 405, 4905, 170, 39, 4183, 23147, 60, 17, 11368, 9,
              130, 17, 1121, 66, 21, 17, 0, 17, 1121, 66, 17, 0, 14239, 160, 41, 44, 690]
PINNED_SEQUENCES = [
    "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides "
    "general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural "
    "Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained "
    "models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
    "BERT is designed to pre-train deep bidirectional representations from unlabeled text by jointly "
    "conditioning on both left and right context in all layers.",
    "The quick brown fox jumps over the lazy dog.",
]
PINNED_SEQUENCE_IDS = [
    [17, 21442, 270, 17, 10, 14645, 318, 34, 17, 4546, 3145, 787, 13, 7752, 22018, 23, 21, 17, 4546, 3145, 787, 13,
     3352, 14431, 13, 5500, 11, 1176, 580, 13, 16819, 4797, 23, 17, 10, 17135, 658, 19, 457, 7932, 13, 184, 19, 3154,
     17135, 6468, 19, 1404, 12269, 19, 4229, 5356, 16264, 46, 19, 17, 20545, 10395, 9, 9, 9, 11, 28, 6421, 9531,
     20729, 17, 10, 353, 17022, 11, 21, 6421, 9531, 16949, 17, 10, 11509, 753, 11, 33, 95, 2421, 7385, 956, 14431,
     2626, 25, 842, 7385, 4836, 21, 1429, 2272, 9855, 3120, 161, 24738, 19, 13203, 658, 218, 787, 21, 430, 18482,
     847, 2637, 9, 4, 3],
    [322, 22178, 27, 1064, 22, 956, 13, 11101, 1429, 5854, 24313, 18953, 40, 422, 24366, 68, 1758, 37, 10483, 14257,
     31, 207, 263, 21, 203, 3773, 25, 71, 9735, 9, 4, 3],
    [32, 2049, 3442, 17, 13894, 3380, 23, 95, 18, 17634, 2288, 9, 4, 3],
]


def sst2_dev() -> list[str]:
    with open(ROOT / "toolkit" / "assets" / "sst2" / "dev.tsv", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["sentence", "label"]
    return [row[0] for row in rows[1:]]


@pytest.fixture(scope="module")
def encoder() -> T.XLNetTextEncoder:
    return T.XLNetTextEncoder()


# ---- vocabulary and spiece.model ----

def test_vocab_repairs_are_the_documented_ones() -> None:
    pieces, repair = T.repaired_vocab()
    assert pieces[12][0] == '"' and pieces[17666][0] == "\\"
    assert len(repair.number_comma_restored) == 78
    assert pieces[1520] == ("▁1,", pytest.approx(-9.58216381072998))
    assert len(repair.unrecoverable) == 18 and 4145 in repair.unrecoverable
    assert len({p for p, _ in pieces}) == 32000, "pieces must be unique for sentencepiece and the Unigram model"


def test_rebuilt_spiece_model_loads_in_sentencepiece() -> None:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = T.spiece_model_path()
    proto = pb.ModelProto()
    proto.ParseFromString(path.read_bytes())
    kinds = pb.ModelProto.SentencePiece
    assert proto.trainer_spec.model_type == pb.TrainerSpec.UNIGRAM and proto.normalizer_spec.name == "nmt_nfkc"
    assert [proto.pieces[i].type for i in (3, 4, 5, 6, 7)] == [kinds.CONTROL] * 5
    assert [proto.pieces[i].piece for i in range(8, 17)] == list(T.USER_DEFINED_PIECES)
    assert all(proto.pieces[i].type == kinds.USER_DEFINED for i in range(8, 17))
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.get_piece_size() == 32000
    assert sp.encode("ｆｕｌｌ\u00a0width", out_type=str) == ["▁full", "▁width"]  # nmt_nfkc charsmap is live


def test_transformers_pinned_integration_ids(encoder: T.XLNetTextEncoder) -> None:
    assert encoder.text_ids([PINNED_TEXT])[0] == PINNED_IDS
    batch = encoder.tokenizer(PINNED_SEQUENCES, padding=True)
    for row, expected in zip(batch["input_ids"], PINNED_SEQUENCE_IDS):
        assert [i for i in row if i != T.PAD_ID] == expected
        assert row[: len(row) - len(expected)] == [T.PAD_ID] * (len(row) - len(expected))  # left padding


def _xlnet_original_ids(sp, text: str) -> list[int]:
    """XLNet's own prepro_utils: preprocess_text + encode_pieces (digit-comma split) over sentencepiece."""
    text = " ".join(text.strip().split()).replace("``", '"').replace("''", '"')
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    out: list[str] = []
    for piece in sp.encode(text, out_type=str):
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            cur = sp.encode(piece[:-1].replace(T.SPIECE_UNDERLINE, ""), out_type=str)
            if piece[0] != T.SPIECE_UNDERLINE and cur[0][0] == T.SPIECE_UNDERLINE:
                cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:]] + cur[1:]
            out.extend(cur + [","])
        else:
            out.append(piece)
    return [sp.piece_to_id(p) for p in out]


def test_host_equals_original_xlnet_pipeline_on_sst2_dev(encoder: T.XLNetTextEncoder) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(T.spiece_model_path()))
    texts = sst2_dev()
    host = encoder.text_ids(texts)
    assert sum(h == _xlnet_original_ids(sp, t) for h, t in zip(host, texts)) == 872
    raw = sp.encode(texts)  # sentencepiece alone keeps accents and "9," pieces: close, not equal
    assert 840 <= sum(h == r for h, r in zip(host, raw)) < 872


# ---- XLNet conventions ----

def test_single_sentence_exact_ids(encoder: T.XLNetTextEncoder) -> None:
    batch = encoder.encode(["a gorgeous , witty , seductive movie ."], seq_len=16)
    assert batch.input_ids.dtype == np.int32 and batch.input_ids.shape == (1, 16)
    assert batch.input_ids[0].tolist() == [5, 5, 5, 24, 11683, 17, 19, 29458, 17, 19, 28997, 1432, 17, 9, 4, 3]
    assert batch.attention_mask[0].tolist() == [0] * 3 + [1] * 13
    assert batch.token_type_ids[0].tolist() == [3] * 3 + [0] * 12 + [2]


def test_pair_layout(encoder: T.XLNetTextEncoder) -> None:
    batch = encoder.encode(["it 's good"], pairs=["not bad"], seq_len=12)
    assert batch.input_ids[0].tolist() == [5, 5, 36, 17, 26, 23, 195, 4, 50, 948, 4, 3]
    assert batch.token_type_ids[0].tolist() == [3, 3, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2]


def test_truncation_keeps_start_and_final_sep_cls(encoder: T.XLNetTextEncoder) -> None:
    text = " ".join(f"w{i}" for i in range(100))
    full = encoder.text_ids([text])[0]
    batch = encoder.encode([text], seq_len=10)
    assert batch.input_ids[0].tolist() == full[:8] + [T.SEP_ID, T.CLS_ID]
    assert batch.attention_mask[0].tolist() == [1] * 10
    pair = encoder.encode([text], pairs=["short one"], seq_len=10)
    assert pair.input_ids[0, -2:].tolist() == [T.SEP_ID, T.CLS_ID] and (pair.input_ids[0] == T.SEP_ID).sum() == 2


def test_truncated_lengths_follow_longest_first() -> None:
    assert T.truncated_lengths(10, None, 4) == (4, 0)
    assert T.truncated_lengths(2, 2, 3) == (1, 2)  # equal: A counts as the shorter
    assert T.truncated_lengths(6, 5, 5) == (3, 2)
    assert T.truncated_lengths(1, 10, 5) == (1, 4)
    assert T.truncated_lengths(3, 2, 9) == (3, 2)


def test_empty_text_and_too_short_seq_len(encoder: T.XLNetTextEncoder) -> None:
    assert encoder.encode([""], seq_len=4).input_ids[0].tolist() == [5, 5, 4, 3]
    with pytest.raises(T.TokenizerError, match="seq_len"):
        encoder.encode(["a"], pairs=["b"], seq_len=2)
    with pytest.raises(T.TokenizerError, match="pairs"):
        encoder.encode(["a", "b"], pairs=["c"])


def test_padded_to_longest(encoder: T.XLNetTextEncoder) -> None:
    batch = encoder.encode_padded_to_longest(["a", "a b c d"], max_len=128)
    assert batch.input_ids.tolist() == [[5, 5, 5, 5, 5, 24, 4, 3], [24, 17, 508, 2349, 17, 66, 4, 3]]
    assert encoder.encode_padded_to_longest(["a b c d"], max_len=5).input_ids.shape == (1, 5)


# ---- vocabulary maps ----

def test_vocab_map_mapping_and_validation() -> None:
    vmap = T.VocabMap.from_used_ids([24, 11683, 9])
    assert vmap.kept_ids == list(range(9)) + [9, 24, 11683]
    assert vmap.to_student(np.array([3, 24, 11683, 17])).tolist() == [3, 10, 11, 0]
    with pytest.raises(T.TokenizerError, match="specials"):
        T.VocabMap([0, 1, 2])
    with pytest.raises(T.TokenizerError, match="distinct"):
        T.VocabMap(list(range(9)) + [20, 20])


def test_trimmed_encoder_equals_mapping_on_its_task_data(encoder: T.XLNetTextEncoder) -> None:
    texts = sst2_dev()
    vmap = T.VocabMap(T.collect_used_ids(encoder, texts))
    student = encoder.with_vocab_map(vmap)
    assert student.vocab_size == len(vmap) < 32000
    full = encoder.encode(texts, seq_len=64)
    trimmed = student.encode(texts, seq_len=64)
    np.testing.assert_array_equal(trimmed.input_ids, vmap.to_student(full.input_ids))
    np.testing.assert_array_equal(trimmed.token_type_ids, full.token_type_ids)


def test_save_and_load_keep_ids_and_vocab_map(encoder: T.XLNetTextEncoder, tmp_path: Path) -> None:
    student = encoder.with_vocab_map(T.VocabMap(T.collect_used_ids(encoder, ["a gorgeous movie ."])))
    student.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "vocab_map.json").is_file()
    loaded = T.XLNetTextEncoder.from_pretrained(tmp_path)
    assert loaded.vocab_map == student.vocab_map
    texts = ["a gorgeous movie .", "an unseen Café sentence"]
    np.testing.assert_array_equal(loaded.encode(texts).input_ids, student.encode(texts).input_ids)
    encoder.save_pretrained(tmp_path)  # saving the full encoder removes the stale map
    assert T.XLNetTextEncoder.from_pretrained(tmp_path).vocab_map is None


# ---- portable export ----

def test_decode_charsmap_lists_nmt_nfkc_rules(encoder: T.XLNetTextEncoder) -> None:
    table = T.decode_charsmap(T._charsmap_of(encoder.tokenizer))
    assert len(table) > 200_000
    assert table["\t"] == " " and table["\u200b"] == " " and table["\x0b"] == "" and table["ﬁ"] == "fi"


def test_export_portable_is_self_describing(encoder: T.XLNetTextEncoder, tmp_path: Path) -> None:
    student = encoder.with_vocab_map(T.VocabMap(T.collect_used_ids(encoder, ["a gorgeous movie ."])))
    spec = json.loads(student.export_portable(tmp_path / "tokenizer.json", seq_len=32).read_text(encoding="utf-8"))
    assert (spec["format"], spec["format_version"]) == ("xlnet-edge-tokenizer", 1)
    assert len(spec["model"]["pieces"]) == len(student.vocab_map)
    assert [p for p, _ in spec["model"]["pieces"][:9]] == list(T.SPECIAL_PIECES)
    assert spec["model"]["vocab_map"]["original_ids"] == student.vocab_map.kept_ids
    assert spec["special_ids"] == {"unk": 0, "sep": 4, "cls": 3, "pad": 5, "mask": 6}
    assert spec["padding"]["side"] == "left" and spec["sequence_length"] == 32
    assert spec["normalizer"]["decompose"]["map"]["é"] == "e"
    assert spec["normalizer"]["charsmap"]["map"]["\t"] == " "
