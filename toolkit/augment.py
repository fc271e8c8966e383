"""Teacher-labelled augmentation: more inputs for the teacher to label than the labelled set holds.

A small student copies a strong teacher well only where it has seen the teacher's answers; on the labelled texts
alone it sees too few. Following Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks") and TinyBERT, each training text gets up to ``variants`` altered copies:

- **masking**: each word becomes ``<unk>`` with probability ``p_mask`` (the token a trimmed student sees for words
  it does not know, so the teacher's answer on it is exactly what the student needs);
- **neighbour replacement**: otherwise, with probability ``p_neighbour``, a word that is one whole-word piece is
  replaced by its nearest whole-word piece in the *teacher's own* embedding matrix (cosine; no outside model),
  among the pieces the student keeps, so the vocabulary does not grow;
- **n-gram sampling**: with probability ``p_ngram`` the variant is cut to a random run of 1..``max_ngram`` words.

Variants carry no label: the distillation loss on them is the teacher's soft labels alone. Everything is seeded per
(seed, text index), so the same data gives the same variants whatever the order or the number of processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from toolkit.data import LabelledData
from toolkit.tokenizer import NUM_SPECIALS, XLNetTextEncoder

MASK_WORD = "<unk>"  # tokenizes to id 0 in the teacher's encoder and in every trimmed student encoder
WORD_START = "\u2581"  # sentencepiece's word-start marker


@dataclass(frozen=True)
class AugmentRecipe:
    """How variants are made (defaults: Tang et al. 2019's p_mask, p_pos and p_ng; n-grams of 1..5 words)."""

    variants: int = 0  # per training text; 0 = off
    p_mask: float = 0.1
    p_neighbour: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    seed: int = 0


def word_neighbours(
    encoder: XLNetTextEncoder, embedding: torch.Tensor, kept_ids: Sequence[int], chunk: int = 2048
) -> dict[int, int]:
    """For every kept whole-word piece (``▁word``, letters only), the nearest other one by cosine similarity.

    ``embedding`` is the teacher's word-embedding matrix over the full vocabulary; ids are the teacher's.
    """
    pieces = encoder.tokenizer.convert_ids_to_tokens([int(i) for i in kept_ids])
    candidates = [
        int(i) for i, piece in zip(kept_ids, pieces)
        if int(i) >= NUM_SPECIALS and piece.startswith(WORD_START) and piece[1:].isalpha()
    ]
    if len(candidates) < 2:
        return {}
    vectors = torch.nn.functional.normalize(embedding[torch.tensor(candidates)].float(), dim=-1)
    neighbours = {}
    for start in range(0, len(candidates), chunk):
        similarity = vectors[start : start + chunk] @ vectors.t()
        rows = torch.arange(similarity.shape[0])
        similarity[rows, rows + start] = -2.0  # never the word itself
        best = similarity.argmax(dim=1)
        for row, column in zip(range(start, start + similarity.shape[0]), best.tolist()):
            neighbours[candidates[row]] = candidates[column]
    return neighbours


class Augmenter:
    """Makes the variants of texts with one recipe; word-level choices come from a per-text seeded generator."""

    def __init__(self, recipe: AugmentRecipe, encoder: XLNetTextEncoder, neighbours: dict[int, int]) -> None:
        self.recipe = recipe
        self.encoder = encoder
        self.neighbours = neighbours
        self._replacement: dict[str, str | None] = {}

    def _replacements_for(self, words: set[str]) -> None:
        """Look up (once per distinct word) the neighbour word of each word that is a single kept piece."""
        new = sorted(w for w in words if w not in self._replacement)
        if not new:
            return
        for word, ids in zip(new, self.encoder.text_ids(new)):
            neighbour = self.neighbours.get(ids[0]) if len(ids) == 1 else None
            self._replacement[word] = (
                None if neighbour is None else self.encoder.tokenizer.convert_ids_to_tokens(neighbour)[1:]
            )

    def variants(self, text: str, index: int) -> list[str]:
        """Up to ``recipe.variants`` distinct variants of ``text`` (never the text itself)."""
        recipe = self.recipe
        words = text.split()
        if not words or recipe.variants <= 0:
            return []
        self._replacements_for(set(words))
        rng = np.random.default_rng([recipe.seed, index])
        out: list[str] = []
        for _ in range(recipe.variants):
            draws = rng.random(len(words))
            changed = []
            for word, u in zip(words, draws):
                if u < recipe.p_mask:
                    changed.append(MASK_WORD)
                elif u < recipe.p_mask + recipe.p_neighbour and self._replacement.get(word):
                    changed.append(self._replacement[word])
                else:
                    changed.append(word)
            if rng.random() < recipe.p_ngram and len(changed) > 1:
                n = int(rng.integers(1, min(recipe.max_ngram, len(changed) - 1) + 1))
                start = int(rng.integers(0, len(changed) - n + 1))
                changed = changed[start : start + n]
            variant = " ".join(changed)
            if variant != text and variant not in out:
                out.append(variant)
        return out

    def augment(self, data: LabelledData) -> LabelledData:
        """Every text's variants, as one data set (labels: the source text's, for reference only; pairs altered too)."""
        self._replacements_for({w for t in list(data.texts) + list(data.pairs or []) for w in t.split()})
        texts, pairs, labels = [], [] if data.pairs is not None else None, []
        for i, text in enumerate(data.texts):
            made = self.variants(text, i)
            if data.pairs is not None:
                # A pair variant: both sides altered, each with its own generator (index offset by the data size).
                made_b = self.variants(data.pairs[i], len(data) + i) or [data.pairs[i]]
                pairs.extend(made_b[k % len(made_b)] for k in range(len(made)))
            texts.extend(made)
            labels.extend([data.labels[i]] * len(made))
        return LabelledData(texts, pairs, labels, data.label_names, f"{data.source} (augmented x{self.recipe.variants})")
