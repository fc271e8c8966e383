"""Which output of the teacher's classification head each of the data's labels is: one rule, decided in preflight.

A fine-tuned checkpoint names its outputs in ``config.json`` (``id2label``); transformers writes ``LABEL_0``,
``LABEL_1``, ... when the user never set names. Data files carry names (``negative``) or indices (``0``). The rule,
tried in this order, is the same for every command (export, distill) and is printed and recorded in the manifest:

1. **by name**: every data label is one of the head's names (exact, else ignoring case);
2. **by index**: every data label is an integer ``k`` with ``0 <= k < num_labels``: output ``k``
   (``LABEL_k`` when the teacher kept transformers' default names);
3. anything else is refused before any training, with both label lists and the two ways to fix it. In particular
   default ``LABEL_i`` names with data labelled by words are refused: the order the model was trained in is not
   written anywhere, and a guess would silently train the student against the wrong outputs.

After matching, the data's label indices ARE the head's output indices and the bundle's label names are the head's
names (the data's integer names when the head only has transformers' defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from toolkit.data import LabelledData
from toolkit.errors import ToolkitError

DEFAULT_NAME = re.compile(r"^LABEL_(\d+)$")


class LabelMismatchError(ToolkitError, ValueError):
    """The data's labels cannot be matched to the teacher's outputs; the message shows both lists."""


def head_names(config: dict) -> list[str]:
    """The head's output names in output order, from a ``config.json`` dict (``id2label`` keys are strings there)."""
    count = int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(count)]


def has_default_names(names: list[str]) -> bool:
    """True when every name is transformers' placeholder ``LABEL_i`` for its own index."""
    return all((m := DEFAULT_NAME.match(n)) and int(m.group(1)) == i for i, n in enumerate(names))


@dataclass(frozen=True)
class LabelMatch:
    """Data label name -> head output index, and the names the bundle ships (one per head output)."""

    names: list[str]
    head_index: dict[str, int]
    rule: str  # "by name" | "by index"

    def describe(self) -> str:
        pairs = ", ".join(f"{label}->{index}" for label, index in list(self.head_index.items())[:8])
        more = f", ... ({len(self.head_index)} labels)" if len(self.head_index) > 8 else ""
        return f"labels matched to the teacher's outputs {self.rule}: {pairs}{more}"

    def apply(self, data: LabelledData) -> LabelledData:
        """The same rows with labels as head output indices and the head's names as the label set."""
        return replace(
            data,
            labels=[self.head_index[data.label_names[i]] for i in data.labels],
            label_names=list(self.names),
        )

    def to_json(self) -> dict:
        return {"rule": self.rule, "data_to_output": dict(self.head_index)}


def match_labels(teacher_names: list[str], data_names: list[str], teacher: str = "the teacher") -> LabelMatch:
    """Match the data's label names to the head's outputs by the module's rule, or refuse with both lists."""
    by_exact = {n: i for i, n in enumerate(teacher_names)}
    by_folded = {n.casefold(): i for i, n in enumerate(teacher_names)}
    if not has_default_names(teacher_names):
        if all(n in by_exact for n in data_names):
            return LabelMatch(list(teacher_names), {n: by_exact[n] for n in data_names}, "by name")
        if all(n.casefold() in by_folded for n in data_names):
            return LabelMatch(list(teacher_names), {n: by_folded[n.casefold()] for n in data_names}, "by name")
    elif all(n in by_exact for n in data_names):  # the data itself says LABEL_i
        return LabelMatch(list(teacher_names), {n: by_exact[n] for n in data_names}, "by name")
    if all(n.lstrip("-").isdigit() and 0 <= int(n) < len(teacher_names) for n in data_names):
        names = [str(i) for i in range(len(teacher_names))] if has_default_names(teacher_names) else teacher_names
        return LabelMatch(list(names), {n: int(n) for n in data_names}, "by index")
    shown_teacher = _short(teacher_names)
    shown_data = _short(data_names)
    why = (
        "its config.json has only transformers' default names, so the order it was trained in is unknown"
        if has_default_names(teacher_names)
        else "some data labels are neither output names nor output indices"
    )
    raise LabelMismatchError(
        f"the data's labels {shown_data} do not match {teacher}'s {len(teacher_names)} outputs {shown_teacher}: "
        f"{why}. Fix one side: write the names in output order into config.json "
        '(e.g. "id2label": {"0": "negative", "1": "positive"}), or label the data with output indices '
        f"0..{len(teacher_names) - 1}"
    )


def _short(names: list[str], limit: int = 12) -> str:
    return str(names) if len(names) <= limit else str(names[:limit])[:-1] + f", ... ({len(names)} in all)]"
