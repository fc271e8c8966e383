"""The XLNet tokenizer on the host, its trimmed-vocabulary variant, and its portable form for apps.

Everything starts from the bundled text vocabulary ``assets/xlnet_vocab/xlnet_base_cased.vocab`` (no Hugging Face hub):

1. :func:`repaired_vocab` fixes the known damage in that export (see ``assets/xlnet_vocab/PROVENANCE.md``);
2. :func:`spiece_model_bytes` rebuilds the original ``spiece.model`` (UNIGRAM, nmt_nfkc) with sentencepiece's protobuf;
3. :func:`build_xlnet_tokenizer` turns it into transformers' ``XLNetTokenizer`` exactly as transformers'
   XLNet converter does (same normaliser, same ``-100`` score rule for ``<digit>,`` pieces);
4. :class:`XLNetTextEncoder` adds XLNet's conventions (``A <sep> <cls>`` at the END, LEFT padding with ``<pad>``,
   token types 0/1/2/3), fixed or batch-longest padding, truncation, an optional trimmed vocabulary
   (:class:`VocabMap`), and :meth:`XLNetTextEncoder.export_portable`, the ``tokenizer.json`` the sample apps read.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.files import PROJECT_ROOT, atomic_write_bytes, atomic_write_json, atomic_write_text, cache_dir, sha256_file

VOCAB_DIR = PROJECT_ROOT / "toolkit" / "assets" / "xlnet_vocab"
VOCAB_FILE = VOCAB_DIR / "xlnet_base_cased.vocab"

UNK_ID, BOS_ID, EOS_ID, CLS_ID, SEP_ID, PAD_ID, MASK_ID, EOD_ID, EOP_ID = range(9)
SPECIAL_PIECES = ("<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>")
NUM_SPECIALS = len(SPECIAL_PIECES)
CONTROL_PIECES = ("<cls>", "<sep>", "<pad>", "<mask>", "<eod>")  # XLNet's spm_train --control_symbols
USER_DEFINED_PIECES = ("<eop>", ".", "(", ")", '"', "-", "–", "£", "€")  # --user_defined_symbols, ids 8..16
TYPE_A, TYPE_B, TYPE_CLS, TYPE_PAD = 0, 1, 2, 3
NUMBER_COMMA_PENALTY = 100.0  # transformers' XLNetConverter: pieces like "9," lose 100 so "9,000" splits like XLNet
PORTABLE_FORMAT = "xlnet-edge-tokenizer"
PORTABLE_VERSION = 1
SPIECE_UNDERLINE = "\u2581"


class TokenizerError(ToolkitError, RuntimeError):
    """A tokenizer asset or argument is wrong; the message says what to do."""


# --------------------------------------------------------------------------------------------------------------------
# 1. The vocabulary and its repairs
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VocabRepair:
    """What :func:`repaired_vocab` changed, so tests and reports can show it."""

    id12_fixed: bool
    backslash_fixed: bool
    number_comma_restored: list[int]
    unrecoverable: list[int]


def read_vocab_text(path: Path = VOCAB_FILE) -> list[tuple[str, float]]:
    """``piece<TAB>log-prob`` lines in id order."""
    if not path.is_file():
        raise TokenizerError(f"XLNet vocabulary not found at {path}; it ships with the toolkit (toolkit/assets).")
    pieces: list[tuple[str, float]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").rstrip("\n").split("\n"), start=1):
        piece, sep, score = line.rpartition("\t")
        if not sep:
            raise TokenizerError(f"{path}:{number}: expected 'piece<TAB>score', got {line!r}")
        pieces.append((piece, float(score)))
    if len(pieces) != 32000 or tuple(p for p, _ in pieces[:NUM_SPECIALS]) != SPECIAL_PIECES:
        raise TokenizerError(f"{path} is not the xlnet-base-cased vocabulary (32,000 lines starting <unk> <s> </s>...)")
    return pieces


def repaired_vocab(path: Path = VOCAB_FILE) -> tuple[list[tuple[str, float]], VocabRepair]:
    """Undo the damage the text export did to the original sentencepiece vocabulary.

    The export was taken from transformers' *fast* tokenizer (scores already carry the -100 rule) and lost
    characters on the way: ``"`` became ``\\`` (id 12), ``\\`` became ``\\\\`` (id 17666), and commas vanished
    from pieces, so ``"▁1,"`` reads ``"▁1"`` and collides with the real ``"▁1"``. What is provable is repaired;
    pieces that only collide (origin unknown) become unreachable placeholders so nothing matches them wrongly.
    """
    pieces = read_vocab_text(path)
    id12_fixed = pieces[12][0] == "\\"
    if id12_fixed:  # the 5th user-defined symbol of XLNet's spm_train command line is the double quote
        pieces[12] = ('"', pieces[12][1])
    backslash_fixed = pieces[17666][0] == "\\\\"
    if backslash_fixed:  # every character must exist as a single piece; "\" only can if this one is "\"
        pieces[17666] = ("\\", pieces[17666][1])
    restored = []
    for i, (piece, score) in enumerate(pieces):
        if score < -50.0 and piece[-1:].isdigit():  # only XLNetConverter's "-100" pieces score that low
            pieces[i] = (piece + ",", score + NUMBER_COMMA_PENALTY)
            restored.append(i)
    seen: set[str] = set()
    unrecoverable = []
    for i, (piece, score) in enumerate(pieces):
        if piece in seen or piece == "":
            pieces[i] = (f"<unrecoverable_{i}>", score)
            unrecoverable.append(i)
        seen.add(pieces[i][0])
    return pieces, VocabRepair(id12_fixed, backslash_fixed, restored, unrecoverable)


# --------------------------------------------------------------------------------------------------------------------
# 2. Rebuilding spiece.model
# --------------------------------------------------------------------------------------------------------------------


def nmt_nfkc_charsmap() -> bytes:
    """sentencepiece's compiled ``nmt_nfkc`` normalisation rules (a darts trie + replacement strings).

    sentencepiece only hands them out inside a trained model, so a throwaway model is trained on a few lines.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(f"a tiny corpus line number {i}" for i in range(100)), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "m"), vocab_size=30, model_type="unigram",
            normalization_rule_name="nmt_nfkc", hard_vocab_limit=False, minloglevel=2,
        )
        proto = pb.ModelProto()
        proto.ParseFromString((Path(tmp) / "m.model").read_bytes())
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if len(charsmap) < 1000:
        raise TokenizerError("sentencepiece returned no nmt_nfkc charsmap; check the sentencepiece install")
    return charsmap


def spiece_model_bytes(pieces: Sequence[tuple[str, float]], charsmap: bytes) -> bytes:
    """Serialise an XLNet-style sentencepiece ModelProto (the settings of XLNet's own ``spm_train`` call)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    kinds = pb.ModelProto.SentencePiece
    for i, (piece, score) in enumerate(pieces):
        entry = proto.pieces.add()
        entry.piece, entry.score = piece, score
        if i == UNK_ID:
            entry.type = kinds.UNKNOWN
        elif piece in ("<s>", "</s>") or piece in CONTROL_PIECES:
            entry.type = kinds.CONTROL
        elif i < 17 and piece in USER_DEFINED_PIECES:
            entry.type = kinds.USER_DEFINED
        elif piece.startswith("<unrecoverable_"):
            entry.type = kinds.UNUSED
        else:
            entry.type = kinds.NORMAL
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.UNIGRAM
    spec.vocab_size = len(pieces)
    spec.character_coverage = 0.99995
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = UNK_ID, BOS_ID, EOS_ID, -1
    spec.control_symbols.extend(CONTROL_PIECES)
    spec.user_defined_symbols.extend(USER_DEFINED_PIECES)
    norm = proto.normalizer_spec
    norm.name = "nmt_nfkc"
    norm.precompiled_charsmap = charsmap
    norm.add_dummy_prefix = norm.remove_extra_whitespaces = norm.escape_whitespaces = True
    return proto.SerializeToString()


def spiece_model_path() -> Path:
    """The rebuilt ``spiece.model``, built once and cached (keyed by the vocabulary's hash)."""
    digest = sha256_file(VOCAB_FILE)[:16]
    path = cache_dir("tokenizer") / f"spiece-{digest}.model"
    if not path.is_file():
        pieces, _ = repaired_vocab()
        atomic_write_bytes(path, spiece_model_bytes(pieces, nmt_nfkc_charsmap()))
    return path


def read_spiece_model(path: Path) -> tuple[list[tuple[str, float]], bytes]:
    """(pieces with float32 scores as Python floats, precompiled charsmap) of a sentencepiece model file."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(path.read_bytes())
    return [(p.piece, p.score) for p in proto.pieces], proto.normalizer_spec.precompiled_charsmap


def hf_unigram_vocab(pieces: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Scores as transformers' XLNetConverter hands them to the Unigram model (``<digit>,`` pieces -100)."""
    return [
        (p, s - NUMBER_COMMA_PENALTY) if len(p) >= 2 and p[-1] == "," and p[-2].isdigit() else (p, s)
        for p, s in pieces
    ]


def build_xlnet_tokenizer(pieces: Sequence[tuple[str, float]] | None = None, charsmap: bytes | None = None) -> Any:
    """transformers' ``XLNetTokenizer`` for xlnet-base-cased, built offline from the bundled vocabulary.

    Built through the constructor (not ``from_pretrained(spiece.model)``) because transformers 5 skips the
    converter's ``-100`` rule on that path; with it the ids equal the hub tokenizer's (see tests).
    """
    from transformers import XLNetTokenizer

    if pieces is None or charsmap is None:
        model_pieces, model_charsmap = read_spiece_model(spiece_model_path())
        pieces = model_pieces if pieces is None else pieces
        charsmap = model_charsmap if charsmap is None else charsmap
    return XLNetTokenizer(vocab=hf_unigram_vocab(pieces), unk_id=UNK_ID, _spm_precompiled_charsmap=charsmap)


# --------------------------------------------------------------------------------------------------------------------
# 3. Trimmed vocabularies
# --------------------------------------------------------------------------------------------------------------------


class VocabMap:
    """Original XLNet id -> student id, for a student that keeps only the ids its task uses.

    ``kept_ids[i]`` is the original id of student id ``i``; the 9 specials stay first, in place (0..8);
    original ids that are not kept map to ``<unk>`` (0).
    """

    FILE_NAME = "vocab_map.json"

    def __init__(self, kept_ids: Sequence[int], original_size: int = 32000) -> None:
        kept = [int(i) for i in kept_ids]
        if kept[:NUM_SPECIALS] != list(range(NUM_SPECIALS)):
            raise TokenizerError(f"kept_ids must start with the specials 0..{NUM_SPECIALS - 1} in order")
        if len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= original_size:
            raise TokenizerError(f"kept_ids must be distinct ids in [0, {original_size})")
        self.kept_ids = kept
        self.original_size = original_size
        self._lookup = np.zeros(original_size, dtype=np.int32)  # not kept -> <unk> = 0
        self._lookup[np.asarray(kept)] = np.arange(len(kept), dtype=np.int32)

    @classmethod
    def from_used_ids(cls, used_ids: Sequence[int], original_size: int = 32000) -> "VocabMap":
        """Specials first, then the used ids in ascending order."""
        rest = sorted({int(i) for i in used_ids} - set(range(NUM_SPECIALS)))
        return cls(list(range(NUM_SPECIALS)) + rest, original_size)

    def __len__(self) -> int:
        return len(self.kept_ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VocabMap) and self.kept_ids == other.kept_ids

    def to_student(self, original_ids: np.ndarray) -> np.ndarray:
        """Map original ids (any shape) to student ids; unknown ones become 0."""
        return self._lookup[np.asarray(original_ids)]

    def save(self, folder: Path | str) -> Path:
        return atomic_write_json(
            Path(folder) / self.FILE_NAME,
            {"original_size": self.original_size, "kept_ids": self.kept_ids},
        )

    @classmethod
    def load(cls, folder: Path | str) -> "VocabMap | None":
        path = Path(folder) / cls.FILE_NAME
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["kept_ids"], data.get("original_size", 32000))


# --------------------------------------------------------------------------------------------------------------------
# 4. The encoder
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EncodedBatch:
    """Model inputs, int32 ``[N, seq_len]``: ``attention_mask`` is 1 on real tokens (XLNet pads on the left)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "token_type_ids": self.token_type_ids}


def truncated_lengths(len_a: int, len_b: int | None, budget: int) -> tuple[int, int]:
    """How many text tokens of A (and B) survive in ``budget`` slots; tokens are cut from the END.

    The end goes (not the start) because the opening words carry the topic and it is what transformers does;
    ``<sep> <cls>`` are never cut. Pairs follow transformers' ``longest_first``: the shorter segment keeps at
    most half the budget (rounded down; on equal lengths A counts as the shorter), the longer fills the rest.
    """
    if len_b is None:
        return min(len_a, budget), 0
    if len_a + len_b <= budget:
        return len_a, len_b
    if len_a > len_b:
        len_b = min(len_b, budget // 2)
        return min(len_a, budget - len_b), len_b
    len_a = min(len_a, budget // 2)
    return len_a, min(len_b, budget - len_a)


def assemble(ids_a: Sequence[int], ids_b: Sequence[int] | None, seq_len: int) -> tuple[list[int], list[int]]:
    """XLNet template + left padding: ``[pad.. A <sep> (B <sep>) <cls>]`` and its token types."""
    budget = seq_len - (2 if ids_b is None else 3)
    if budget < 0:
        raise TokenizerError(f"seq_len={seq_len} cannot hold XLNet's special tokens; use seq_len >= 3")
    n_a, n_b = truncated_lengths(len(ids_a), None if ids_b is None else len(ids_b), budget)
    ids = list(ids_a[:n_a]) + [SEP_ID]
    types = [TYPE_A] * (n_a + 1)
    if ids_b is not None:
        ids += list(ids_b[:n_b]) + [SEP_ID]
        types += [TYPE_B] * (n_b + 1)
    ids.append(CLS_ID)
    types.append(TYPE_CLS)
    pad = seq_len - len(ids)
    return [PAD_ID] * pad + ids, [TYPE_PAD] * pad + types


def _to_batch(rows: list[tuple[list[int], list[int]]], seq_len: int) -> EncodedBatch:
    ids = np.full((len(rows), seq_len), PAD_ID, dtype=np.int32)
    types = np.full((len(rows), seq_len), TYPE_PAD, dtype=np.int32)
    for r, (row_ids, row_types) in enumerate(rows):
        ids[r], types[r] = row_ids, row_types
    mask = (types != TYPE_PAD).astype(np.int32)
    return EncodedBatch(ids, mask, types)


class XLNetTextEncoder:
    """XLNet's tokenizer with its input conventions; optionally producing a trimmed student vocabulary's ids.

    With a :class:`VocabMap`, text is segmented by a Unigram model holding only the kept pieces, so the ids are
    student ids natively and the phone apps (which ship only those pieces) match it exactly. On the task data
    the map was collected from, this equals "segment with the full vocabulary, then map" (the best path only
    uses kept pieces); on unseen text it yields kept sub-pieces where mapping would give ``<unk>``.
    """

    def __init__(self, tokenizer: Any | None = None, vocab_map: VocabMap | None = None) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else build_xlnet_tokenizer()
        self.vocab_map = vocab_map
        self._segmenter = self.tokenizer if vocab_map is None else self._trimmed_tokenizer(vocab_map)

    # ---- construction / persistence ----
    @classmethod
    def from_pretrained(cls, folder: Path | str) -> "XLNetTextEncoder":
        """Load from a folder written by :meth:`save_pretrained` (or a teacher folder saved by transformers)."""
        from transformers import XLNetTokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise TokenizerError(f"{folder} has no tokenizer.json; save one with XLNetTextEncoder.save_pretrained")
        return cls(XLNetTokenizer.from_pretrained(str(folder)), VocabMap.load(folder))

    def save_pretrained(self, folder: Path | str) -> Path:
        """transformers' tokenizer files (full vocabulary) plus ``vocab_map.json`` when a map is set."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        stale = folder / VocabMap.FILE_NAME
        if self.vocab_map is not None:
            self.vocab_map.save(folder)
        elif stale.exists():
            stale.unlink()
        return folder

    def with_vocab_map(self, vocab_map: VocabMap) -> "XLNetTextEncoder":
        """The same tokenizer producing student ids of ``vocab_map``."""
        if self.vocab_map is not None:
            raise TokenizerError("this encoder already has a vocab map; build the new map from the full encoder")
        if vocab_map.original_size != self.vocab_size_full:
            raise TokenizerError(f"vocab map is for {vocab_map.original_size} ids, tokenizer has {self.vocab_size_full}")
        return XLNetTextEncoder(self.tokenizer, vocab_map)

    @property
    def vocab_size_full(self) -> int:
        return len(self.tokenizer._vocab)

    @property
    def vocab_size(self) -> int:
        """Embedding rows the model needs: the student size with a map, else 32,000."""
        return len(self.vocab_map) if self.vocab_map is not None else self.vocab_size_full

    def _trimmed_tokenizer(self, vocab_map: VocabMap) -> Any:
        from transformers import XLNetTokenizer

        vocab = self.tokenizer._vocab
        kept = [tuple(vocab[i]) for i in vocab_map.kept_ids]
        charsmap = _charsmap_of(self.tokenizer)
        return XLNetTokenizer(vocab=kept, unk_id=UNK_ID, _spm_precompiled_charsmap=charsmap)

    # ---- encoding ----
    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without XLNet's special tokens (student ids when a map is set)."""
        if isinstance(texts, str):
            raise TokenizerError("pass a list of strings, not a single string")
        if not texts:
            return []
        return self._segmenter(list(texts), add_special_tokens=False)["input_ids"]

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None, seq_len: int = 128) -> EncodedBatch:
        """Fixed-length batch ``[N, seq_len]``; too-long inputs lose tokens from their end (see truncated_lengths)."""
        ids_a, ids_b = self._segment(texts, pairs)
        rows = [assemble(a, None if ids_b is None else ids_b[i], seq_len) for i, a in enumerate(ids_a)]
        return _to_batch(rows, seq_len)

    def encode_padded_to_longest(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, max_len: int = 128
    ) -> EncodedBatch:
        """Like :meth:`encode`, padded only to the longest row (at most ``max_len``): cheaper training batches."""
        ids_a, ids_b = self._segment(texts, pairs)
        extra = 2 if ids_b is None else 3
        longest = max((len(a) + (0 if ids_b is None else len(ids_b[i])) + extra for i, a in enumerate(ids_a)),
                      default=extra)
        seq_len = min(max_len, longest)
        rows = [assemble(a, None if ids_b is None else ids_b[i], seq_len) for i, a in enumerate(ids_a)]
        return _to_batch(rows, seq_len)

    def _segment(self, texts: Sequence[str], pairs: Sequence[str] | None) -> tuple[list, list | None]:
        ids_a = self.text_ids(texts)
        if pairs is None:
            return ids_a, None
        if len(pairs) != len(texts):
            raise TokenizerError(f"{len(texts)} texts but {len(pairs)} pairs: give one pair per text")
        return ids_a, self.text_ids(pairs)

    # ---- portable form ----
    def export_portable(self, path: Path | str, seq_len: int = 128, lengths: Sequence[int] | None = None) -> Path:
        """Write the self-contained ``tokenizer.json`` the sample apps read (format described in it); ``lengths``:
        the model's length buckets (default: ``seq_len`` only)."""
        text = json.dumps(portable_spec(self, seq_len, lengths), ensure_ascii=False, separators=(",", ":"))
        return atomic_write_text(path, text + "\n")


def collect_used_ids(encoder: XLNetTextEncoder, texts: Sequence[str]) -> list[int]:
    """Kept ids for a :class:`VocabMap`: the specials 0..8, then every original id the texts use, ascending."""
    if encoder.vocab_map is not None:
        raise TokenizerError("collect ids with the full-vocabulary encoder, not one that already has a vocab map")
    used: set[int] = set()
    for ids in encoder.text_ids(list(texts)):
        used.update(ids)
    return list(range(NUM_SPECIALS)) + sorted(used - set(range(NUM_SPECIALS)))


# --------------------------------------------------------------------------------------------------------------------
# 5. Portable tokenizer.json
# --------------------------------------------------------------------------------------------------------------------


def _charsmap_of(tokenizer: Any) -> bytes:
    """The nmt_nfkc charsmap inside a transformers tokenizer's normaliser."""
    import base64

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    normalizers = state["normalizer"]["normalizers"]
    for entry in normalizers:
        if entry["type"] == "Precompiled":
            return base64.b64decode(entry["precompiled_charsmap"])
    raise TokenizerError("tokenizer has no Precompiled (nmt_nfkc) normaliser; build it with build_xlnet_tokenizer")


def decode_charsmap(blob: bytes) -> dict[str, str]:
    """Every (source -> replacement) rule of a sentencepiece precompiled charsmap.

    Layout: ``u32 trie_size | darts-clone double-array trie (u32 units) | NUL-separated replacement strings``;
    a trie leaf's value is the byte offset of the replacement. Walking every path lists every rule.
    """
    (trie_size,) = struct.unpack("<I", blob[:4])
    units = np.frombuffer(blob[4:4 + trie_size], dtype="<u4").astype(np.int64)
    strings = blob[4 + trie_size:]

    def offset(unit: int) -> int:
        return (unit >> 10) << ((unit & (1 << 9)) >> 6)

    labels = units & ((1 << 31) | 0xFF)
    all_bytes = np.arange(256, dtype=np.int64)
    table: dict[str, str] = {}
    stack = [(int(offset(int(units[0]))), b"")]
    while stack:
        pos, key = stack.pop()
        children = pos ^ all_bytes
        inside = children < len(units)
        matches = all_bytes[inside][labels[children[inside]] == all_bytes[inside]]
        for byte in matches.tolist():
            child = pos ^ byte
            unit = int(units[child])
            next_pos = child ^ offset(unit)
            next_key = key + bytes([byte])
            if (unit >> 8) & 1:  # has a leaf: the value sits in the unit at next_pos
                start = int(units[next_pos]) & ((1 << 31) - 1)
                end = strings.index(b"\0", start)
                table[next_key.decode("utf-8")] = strings[start:end].decode("utf-8")
            stack.append((next_pos, next_key))
    return table


# Characters after which no grapheme extension happens (UAX #29 Control) and characters that extend the previous
# grapheme, restricted to what survives the host's NFKD + mark stripping. Only used for the charsmap's
# "graphemes under 6 bytes are looked up whole" quirk (tokenizers' Precompiled normaliser).
_ZWNJ, _ZWJ = "\u200c", "\u200d"
_PREPEND = [*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x0D4E, 0x110BD, 0x110CD, 0x111C2, 0x111C3,
            0x1193F, 0x11941, 0x11A3A, *range(0x11A84, 0x11A8A), 0x11D46, 0x11F02]  # UAX #29 Prepend


def _ranges(codepoints: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for cp in sorted(codepoints):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


@functools.lru_cache(maxsize=1)
def _host_char_tables() -> tuple[dict[str, str], list[list[int]], list[list[int]]]:
    """(per-character NFKD + strip-marks result where it differs, grapheme-extend ranges, control ranges).


    Probed on the host's own ``tokenizers`` normalisers for every code point, so apps inherit neither their
    platform's Unicode version nor its NFKD (the host's mark table is older than Python's and Java's).
    """
    from tokenizers import normalizers

    decompose_norm = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents()])
    decompose: dict[str, str] = {}
    extend: list[int] = [0x200C, 0x200D] + list(range(0x1F3FB, 0x1F400)) + list(range(0xE0020, 0xE0080))
    control: list[int] = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        char = chr(cp)
        out = decompose_norm.normalize_str(char)
        if out != char:
            decompose[char] = out
        category = unicodedata.category(char)
        if category[0] == "M" and out == char:  # a mark the host keeps: it still glues to the previous grapheme
            extend.append(cp)
        elif category in ("Cc", "Zl", "Zp") or (category == "Cf" and char not in (_ZWNJ, _ZWJ) and cp not in _PREPEND):
            control.append(cp)
    return decompose, _ranges(extend), _ranges(control)


_WHITESPACE = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000]  # Unicode White_Space (Rust char::is_whitespace)


def portable_spec(encoder: XLNetTextEncoder, seq_len: int, lengths: Sequence[int] | None = None) -> dict[str, Any]:
    """The portable tokenizer as a JSON-able dict (see ``sample_apps/raspberry_pi/xlnet_tokenizer.py``)."""
    segmenter = encoder._segmenter
    vocab = [[piece, float(score)] for piece, score in segmenter._vocab]
    decompose, extend, control = _host_char_tables()
    charsmap = decode_charsmap(_charsmap_of(segmenter))
    # Only rules whose source can still occur after the decompose step (it leaves no compatibility forms and no
    # stripped marks) are kept; they are 1 character, or a prefix of a grapheme under 6 UTF-8 bytes.
    reachable = {
        src: dst for src, dst in charsmap.items()
        if all(decompose.get(ch, ch) == ch for ch in src) and (len(src) == 1 or len(src.encode("utf-8")) < 6)
    }
    specials = []
    for token_id, added in sorted(segmenter.added_tokens_decoder.items()):
        if added.special:
            specials.append({"content": added.content, "id": token_id, "lstrip": added.lstrip,
                             "rstrip": added.rstrip})
    min_score = min(score for _, score in vocab)
    return {
        "format": PORTABLE_FORMAT,
        "format_version": PORTABLE_VERSION,
        "about": (
            "XLNet (xlnet-base-cased) SentencePiece-Unigram tokenizer, exported by toolkit.tokenizer. Steps, in "
            "order: split the raw text on special_tokens; for every other segment apply normalizer.replace "
            "(in order), then normalizer.decompose per character, then normalizer.charsmap per grapheme "
            "(graphemes: CR LF; a prepend character takes the next non-control character; then extend "
            "characters join; a grapheme under 6 UTF-8 bytes whose first character has a rule becomes that rule's "
            "output, otherwise each character maps on its own), split on normalizer.whitespace, prefix each word with "
            "the metaspace character unless it starts with it, split each word before every further metaspace "
            "character, segment each part with Viterbi over model.pieces (highest summed score; ties keep the "
            "first path found scanning left to right, shorter pieces first; a character no piece starts "
            "with costs model.unk_score; adjacent unknown pieces fuse into one unk_id), then apply template, "
            "truncation and padding."
        ),
        "model": {
            "type": "unigram",
            "pieces": vocab,
            "unk_id": UNK_ID,
            "unk_score": min_score - 10.0,
            "fuse_unk": True,
            "vocab_map": None if encoder.vocab_map is None else {
                "note": "pieces are already in student-id order; original_ids[i] is the XLNet id of student id i",
                "original_ids": encoder.vocab_map.kept_ids,
            },
        },
        "special_tokens": specials,
        "special_ids": {"unk": UNK_ID, "sep": SEP_ID, "cls": CLS_ID, "pad": PAD_ID, "mask": MASK_ID},
        "normalizer": {
            "replace": [["``", '"'], ["''", '"']],
            "decompose": {
                "about": "NFKD then removal of combining marks, per code point, as the host implements them",
                "map": decompose,
            },
            "charsmap": {
                "about": "sentencepiece nmt_nfkc rules decoded from the precompiled trie (reachable ones)",
                "map": reachable,
                "grapheme_extend": extend,
                "grapheme_control": control,
                "grapheme_prepend": _ranges(_PREPEND),
                "crlf_is_one_grapheme": True,
                "whole_grapheme_max_utf8_bytes": 5,
            },
            "whitespace": _ranges(_WHITESPACE),
        },
        "pre_tokenizer": {"metaspace": SPIECE_UNDERLINE, "prepend": "always", "split_on_metaspace": True},
        "template": {
            "single": ["$A", "<sep>", "<cls>"], "pair": ["$A", "<sep>", "$B", "<sep>", "<cls>"],
            "type_ids": {"a": TYPE_A, "b": TYPE_B, "cls": TYPE_CLS, "pad": TYPE_PAD},
        },
        "truncation": {"side": "right", "strategy": "longest_first",
                       "about": ("cut text tokens from the end. Pairs: the shorter segment keeps at most floor(budget/2) "
                                  "(equal lengths: A counts as shorter), the longer the rest. <sep>/<cls> always stay")},
        "padding": {"side": "left", "pad_id": PAD_ID, "pad_type_id": TYPE_PAD, "attention_mask_pad": 0},
        "sequence_length": seq_len,
        "sequence_lengths": sorted(lengths or [seq_len]),
        "bucketing": ("the model has one method/signature per length in sequence_lengths: encode at the shortest "
                      "length that holds every token of the text (specials included); a longer text is cut to "
                      "sequence_length"),
    }
