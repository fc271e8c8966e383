"""Labelled text from TSV / CSV / JSONL files: texts, optional text pairs, labels and the label map.

Bad rows are never dropped silently: by default loading stops with the file, line and reason of each bad row;
with ``skip_bad_rows=True`` they are skipped and counted in :attr:`LabelledData.skipped`.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import PROJECT_ROOT

DEMO_DATA_DIR = PROJECT_ROOT / "toolkit" / "assets" / "sst2"
DEMO_TRAIN = DEMO_DATA_DIR / "train.tsv"
DEMO_DEV = DEMO_DATA_DIR / "dev.tsv"
DEMO_LABEL_NAMES = {"0": "negative", "1": "positive"}


class DataError(ToolkitError, ValueError):
    """A data file that cannot be used as it is; the message says where and why."""


@dataclass
class Columns:
    """Which columns (or JSON keys) hold the text, the optional second text, and the label."""

    text: str = "sentence"
    pair: str | None = None
    label: str = "label"


@dataclass
class LabelledData:
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]  # indices into label_names
    label_names: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)  # "line N: reason" for each skipped row

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        counter = Counter(self.labels)
        return {name: counter.get(i, 0) for i, name in enumerate(self.label_names)}

    def subset(self, indices: list[int]) -> "LabelledData":
        return LabelledData(
            texts=[self.texts[i] for i in indices],
            pairs=None if self.pairs is None else [self.pairs[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            label_names=self.label_names,
            source=f"{self.source}[{len(indices)} rows]",
        )

    def fingerprint(self) -> str:
        """A hash of the rows' content (texts, pairs, labels by name): equal data, equal hash, whatever the file."""
        import hashlib

        rows = "\n".join(self.texts) + "\n" + "\n".join(self.pairs or []) + "\n"
        labels = ",".join(self.label_names[i] for i in self.labels)
        return hashlib.sha256((rows + labels).encode()).hexdigest()[:16]

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        skipped = f", {len(self.skipped)} bad rows skipped" if self.skipped else ""
        return f"{self.source}: {len(self)} examples ({counts}){skipped}"


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row dict) for every data row of a .tsv / .csv / .jsonl file."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            # GLUE-style TSV treats quotes as literal characters; CSV uses standard quoting.
            if suffix == ".tsv":
                reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.DictReader(fh)
            return [(reader.line_num, row) for row in reader]
    if suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                rows.append((number, {"__error__": f"not valid JSON ({err.msg})"}))
                continue
            rows.append((number, row if isinstance(row, dict) else {"__error__": "not a JSON object"}))
        return rows
    raise DataError(f"{path}: unsupported file type '{suffix}'; use .tsv, .csv or .jsonl")


def _not_utf8(path: Path) -> str:
    """Where the first non-UTF-8 byte is. The reader's error offset counts from its current buffer, not the file,
    so the whole file is decoded once more to find the line."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return (
            f"{path}: line {line} is not UTF-8 (byte 0x{raw[err.start]:02x}); save the file as UTF-8, "
            f"e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`"
        )
    return f"{path}: not UTF-8; save the file as UTF-8"


def _row_problem(row: dict, columns: Columns) -> str | None:
    if "__error__" in row:
        return row["__error__"]
    if None in row:  # csv puts surplus fields under the None key
        return "more fields than the header"
    for name in (columns.text, columns.label) + ((columns.pair,) if columns.pair else ()):
        value = row.get(name)
        if value is None:
            return f"missing column '{name}'"
        if str(value).strip() == "":
            return f"empty '{name}'"
    return None


def load_labelled(
    path: Path | str,
    columns: Columns | None = None,
    label_names: list[str] | None = None,
    skip_bad_rows: bool = False,
) -> LabelledData:
    """Load labelled text.

    ``label_names`` fixes the label set and order (use the training set's names for the dev set); a row whose label
    is not in it is an error ("mislabelled"). Without it, labels are taken from the data: integers in numeric order,
    otherwise sorted strings.
    """
    path = Path(path)
    columns = columns or Columns()
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        rows = _read_rows(path)
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None

    if rows and "__error__" not in rows[0][1]:
        header = set(rows[0][1].keys()) - {None}
        missing = [c for c in (columns.text, columns.label, columns.pair) if c and c not in header]
        if missing and path.suffix.lower() != ".jsonl":
            raise DataError(
                f"{path}: no column(s) {missing} in the header {sorted(header)}; "
                f"name them with --text-column / --pair-column / --label-column"
            )

    good, skipped = [], []
    for number, row in rows:
        problem = _row_problem(row, columns)
        if problem:
            skipped.append(f"line {number}: {problem}")
        else:
            good.append((number, row))
    if skipped and not skip_bad_rows:
        shown = "\n  ".join(skipped[:10])
        more = f"\n  ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        raise DataError(f"{path}: {len(skipped)} bad rows:\n  {shown}{more}\n(pass --skip-bad-rows to skip them)")
    if not good:
        raise DataError(f"{path}: no usable labelled rows (the file is empty or holds only a header)")

    raw_labels = [str(row[columns.label]).strip() for _, row in good]
    names = label_names if label_names is not None else _label_order(raw_labels)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({label for label in raw_labels if label not in index})
    if unknown:
        raise DataError(f"{path}: labels {unknown[:10]} are not in the label set {names}")

    return LabelledData(
        texts=[str(row[columns.text]) for _, row in good],
        pairs=[str(row[columns.pair]) for _, row in good] if columns.pair else None,
        labels=[index[label] for label in raw_labels],
        label_names=list(names),
        source=str(path),
        skipped=skipped,
    )


def require_two_classes(train: LabelledData) -> None:
    """Training data with a single label teaches nothing; say so before any training starts."""
    present = sorted({train.label_names[i] for i in train.labels})
    if len(present) < 2:
        raise DataError(
            f"{train.source}: every row has the label {present}; a classifier needs at least two classes in its "
            "training data"
        )


def _label_order(raw_labels: list[str]) -> list[str]:
    distinct = set(raw_labels)
    if all(label.lstrip("-").isdigit() for label in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def display_names(data: LabelledData) -> list[str]:
    """Human-readable names for the bundled SST-2 demo data's 0/1 labels; other data's labels as they are."""
    if Path(data.source.split("[")[0]).resolve() in (DEMO_TRAIN.resolve(), DEMO_DEV.resolve()):
        return [DEMO_LABEL_NAMES.get(name, name) for name in data.label_names]
    return list(data.label_names)


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, bucket_batches: int = 50) -> list[list[int]]:
    """Shuffled batches of indices whose members have similar lengths.

    Batches are padded to their longest member, so grouping similar lengths cuts the padded tokens (and the CPU
    time) about 3x on SST-2. Deterministic for a seed: a resumed run sees the same batches.
    """
    import random

    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def load_texts(path: Path | str, column: str = "sentence") -> list[str]:
    """Unlabelled texts for the teacher to label (``--transfer``): one text per line of a .txt file, or the
    ``column`` of a .tsv / .csv / .jsonl file (a label column, if present, is ignored). Empty texts are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such transfer-text file")
    try:
        if path.suffix.lower() in (".txt", ""):
            texts = path.read_text(encoding="utf-8").splitlines()
        else:
            rows = _read_rows(path)
            if rows and column not in rows[0][1]:
                found = sorted(k for k in rows[0][1] if k and k != "__error__")
                raise DataError(f"{path}: no column '{column}' (columns: {found}); name it with --text-column, "
                                "or give a .txt file with one text per line")  # fmt: skip
            texts = [str(row.get(column) or "") for _, row in rows]
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise DataError(f"{path}: no texts (the file is empty or holds only a header)")
    return texts


def unlabelled(texts: list[str], label_names: list[str], source: str) -> LabelledData:
    """Texts without labels, in the shape the teacher-logits cache takes (label index 0 as a placeholder)."""
    return LabelledData(list(texts), None, [0] * len(texts), list(label_names), source)
