"""XLNet tokenizer for the Raspberry Pi app: standard library only, reads the bundle's ``tokenizer.json``.

It reproduces the host encoder (``toolkit.tokenizer.XLNetTextEncoder``) id for id: same special-token
splitting, normalisation tables, Unigram Viterbi, XLNet template, truncation and left padding. All rules come
from ``tokenizer.json`` (its ``about`` field lists the steps); nothing here depends on the Python version's
Unicode tables.

    tok = XLNetTokenizer.load("bundle/tokenizer.json")
    ids, mask, types = tok.encode("a gorgeous , witty , seductive movie .")
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path

SUPPORTED_FORMAT = ("xlnet-edge-tokenizer", 1)


def _in_ranges(ranges: list[list[int]], starts: list[int], code: int) -> bool:
    i = bisect.bisect_right(starts, code) - 1
    return i >= 0 and ranges[i][0] <= code <= ranges[i][1]


class XLNetTokenizer:
    """Text -> (input_ids, attention_mask, token_type_ids), each a list of ``sequence_length`` ints."""

    def __init__(self, spec: dict) -> None:
        found = (spec.get("format"), spec.get("format_version"))
        if found != SUPPORTED_FORMAT:
            raise ValueError(f"tokenizer.json is {found}, this app reads {SUPPORTED_FORMAT}: re-export the bundle")
        model = spec["model"]
        self.piece_ids = {piece: i for i, (piece, _) in enumerate(model["pieces"])}
        self.scores = [float(score) for _, score in model["pieces"]]
        self.max_piece_len = max(len(piece) for piece, _ in model["pieces"])
        self.unk_id = int(model["unk_id"])
        self.unk_score = float(model["unk_score"])
        self.specials = sorted(spec["special_tokens"], key=lambda t: -len(t["content"]))
        ids = spec["special_ids"]
        self.sep_id, self.cls_id, self.pad_id = ids["sep"], ids["cls"], ids["pad"]
        norm = spec["normalizer"]
        self.replace = [(src, dst) for src, dst in norm["replace"]]
        self.decompose = norm["decompose"]["map"]
        charsmap = norm["charsmap"]
        self.charsmap = charsmap["map"]
        self.extend = charsmap["grapheme_extend"]
        self.extend_starts = [r[0] for r in self.extend]
        self.control = charsmap["grapheme_control"]
        self.control_starts = [r[0] for r in self.control]
        self.prepend = {code for lo, hi in charsmap["grapheme_prepend"] for code in range(lo, hi + 1)}
        self.whole_max_bytes = int(charsmap["whole_grapheme_max_utf8_bytes"])
        self.whitespace = {code for lo, hi in norm["whitespace"] for code in range(lo, hi + 1)}
        self.metaspace = spec["pre_tokenizer"]["metaspace"]
        types = spec["template"]["type_ids"]
        self.type_a, self.type_b, self.type_cls, self.type_pad = types["a"], types["b"], types["cls"], types["pad"]
        self.seq_len = int(spec["sequence_length"])
        # Length buckets: the model has one method/signature per length; a text runs at the shortest that holds it.
        self.lengths = sorted(int(n) for n in spec.get("sequence_lengths", [self.seq_len]))

    @classmethod
    def load(cls, path: str | Path) -> "XLNetTokenizer":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    # ---- text -> ids ----
    def text_ids(self, text: str) -> list[int]:
        """Token ids of one text, without special tokens around it."""
        ids: list[int] = []
        for segment, special_id in self._split_specials(text):
            if special_id is not None:
                ids.append(special_id)
                continue
            for word in self._split_words(self._normalize(segment)):
                for part in self._metaspace_parts(word):
                    ids.extend(self._viterbi(part))
        return ids

    def _split_specials(self, text: str) -> list[tuple[str, int | None]]:
        """Cut the raw text at every special token (leftmost match, longest first)."""
        out: list[tuple[str, int | None]] = []
        start = 0
        i = 0
        while i < len(text):
            hit = next((t for t in self.specials if text.startswith(t["content"], i)), None)
            if hit is None:
                i += 1
                continue
            cut = i
            if hit["lstrip"]:
                while cut > start and ord(text[cut - 1]) in self.whitespace:
                    cut -= 1
            out.append((text[start:cut], None))
            out.append(("", hit["id"]))
            i += len(hit["content"])
            if hit["rstrip"]:
                while i < len(text) and ord(text[i]) in self.whitespace:
                    i += 1
            start = i
        out.append((text[start:], None))
        return [(seg, sid) for seg, sid in out if sid is not None or seg]

    def _normalize(self, text: str) -> str:
        for src, dst in self.replace:
            text = text.replace(src, dst)
        text = "".join(self.decompose.get(ch, ch) for ch in text)
        out: list[str] = []
        i = 0
        while i < len(text):
            j = self._grapheme_end(text, i)
            grapheme = text[i:j]
            if len(grapheme.encode("utf-8")) <= self.whole_max_bytes and grapheme[0] in self.charsmap:
                out.append(self.charsmap[grapheme[0]])  # the whole short grapheme takes its first rule
            else:
                out.extend(self.charsmap.get(ch, ch) for ch in grapheme)
            i = j
        return "".join(out)

    def _grapheme_end(self, text: str, i: int) -> int:
        """End of the grapheme starting at ``i`` (enough of UAX #29 for the charsmap rule)."""
        if text[i] == "\r":
            return i + 2 if text[i + 1:i + 2] == "\n" else i + 1
        if self._breaks_before(text[i]):
            return i + 1
        j = i + 1
        while ord(text[j - 1]) in self.prepend and j < len(text) and not self._breaks_before(text[j]):
            j += 1
        while j < len(text) and _in_ranges(self.extend, self.extend_starts, ord(text[j])):
            j += 1
        return j

    def _split_words(self, text: str) -> list[str]:
        """Split on the bundle's whitespace set, dropping empty words."""
        words: list[str] = []
        current: list[str] = []
        for ch in text:
            if ord(ch) in self.whitespace:
                if current:
                    words.append("".join(current))
                    current = []
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
        return words

    def _breaks_before(self, ch: str) -> bool:
        return ch in "\r\n" or _in_ranges(self.control, self.control_starts, ord(ch))

    def _metaspace_parts(self, word: str) -> list[str]:
        """Prefix the metaspace unless present, then split before every further metaspace."""
        if not word.startswith(self.metaspace):
            word = self.metaspace + word
        parts = []
        start = 0
        for k in range(1, len(word)):
            if word[k] == self.metaspace:
                parts.append(word[start:k])
                start = k
        parts.append(word[start:])
        return parts

    def _viterbi(self, text: str) -> list[int]:
        """Best-scoring segmentation into pieces (ties: first found); unknown characters fuse into one unk."""
        n = len(text)
        best = [float("-inf")] * (n + 1)
        back: list[tuple[int, int] | None] = [None] * (n + 1)  # (start, id) of the piece ending here
        best[0] = 0.0
        for start in range(n):
            has_single = False
            for end in range(start + 1, min(n, start + self.max_piece_len) + 1):
                piece_id = self.piece_ids.get(text[start:end])
                if piece_id is None:
                    continue
                score = best[start] + self.scores[piece_id]
                if back[end] is None or score > best[end]:
                    best[end], back[end] = score, (start, piece_id)
                has_single = has_single or end == start + 1
            if not has_single:
                score = best[start] + self.unk_score
                if back[start + 1] is None or score > best[start + 1]:
                    best[start + 1], back[start + 1] = score, (start, self.unk_id)
        ids: list[int] = []
        end = n
        unk_run = False
        while end > 0:
            start, piece_id = back[end]
            if piece_id == self.unk_id:
                if not unk_run:
                    ids.append(self.unk_id)
                unk_run = True
            else:
                ids.append(piece_id)
                unk_run = False
            end = start
        return ids[::-1]

    # ---- model inputs ----
    def encode(self, text: str, pair: str | None = None, seq_len: int | None = None) -> tuple[list, list, list]:
        """XLNet inputs: ``[pad.. A <sep> (B <sep>) <cls>]``, left padding, types 0/1, 2 for <cls>, 3 for pad."""
        seq_len = self.seq_len if seq_len is None else seq_len
        return self._assemble(self.text_ids(text), None if pair is None else self.text_ids(pair), seq_len)

    def encode_bucketed(self, text: str, pair: str | None = None) -> tuple[list, list, list]:
        """``encode`` at the shortest length bucket that holds every token of the text (specials included); a
        longer text is cut to the longest bucket. The length of the lists says which method/signature to run."""
        ids_a = self.text_ids(text)
        ids_b = None if pair is None else self.text_ids(pair)
        tokens = len(ids_a) + (2 if ids_b is None else len(ids_b) + 3)
        seq_len = next((n for n in self.lengths if n >= tokens), self.lengths[-1])
        return self._assemble(ids_a, ids_b, seq_len)

    def _assemble(self, ids_a: list[int], ids_b: list[int] | None, seq_len: int) -> tuple[list, list, list]:
        budget = seq_len - (2 if ids_b is None else 3)
        if budget < 0:
            raise ValueError(f"seq_len={seq_len} is too short for XLNet's special tokens")
        n_a, n_b = _truncated_lengths(len(ids_a), None if ids_b is None else len(ids_b), budget)
        ids = ids_a[:n_a] + [self.sep_id]
        types = [self.type_a] * (n_a + 1)
        if ids_b is not None:
            ids += ids_b[:n_b] + [self.sep_id]
            types += [self.type_b] * (n_b + 1)
        ids.append(self.cls_id)
        types.append(self.type_cls)
        pad = seq_len - len(ids)
        return [self.pad_id] * pad + ids, [0] * pad + [1] * len(ids), [self.type_pad] * pad + types


def _truncated_lengths(len_a: int, len_b: int | None, budget: int) -> tuple[int, int]:
    """Cut from the end; for pairs the shorter keeps at most budget // 2 (A counts as shorter on ties)."""
    if len_b is None:
        return min(len_a, budget), 0
    if len_a + len_b <= budget:
        return len_a, len_b
    if len_a > len_b:
        len_b = min(len_b, budget // 2)
        return min(len_a, budget - len_b), len_b
    len_a = min(len_a, budget // 2)
    return len_a, min(len_b, budget - len_a)


if __name__ == "__main__":
    import sys

    tokenizer = XLNetTokenizer.load(sys.argv[1])
    for line in sys.stdin:
        print(" ".join(map(str, tokenizer.encode(line.rstrip("\n"))[0])))
