"""Loading labelled text from TSV, CSV and JSONL, with bad rows reported by line."""

import json

import pytest

from toolkit.data import DEMO_DEV, DEMO_TRAIN, Columns, DataError, load_labelled


def test_bundled_demo_data():
    train = load_labelled(DEMO_TRAIN)
    dev = load_labelled(DEMO_DEV, label_names=train.label_names)
    assert len(train) == 20000 and len(dev) == 872
    assert train.label_names == ["0", "1"]
    assert dev.counts() == {"0": 428, "1": 444}
    assert dev.texts[0] == "it 's a charming and often affecting journey ."


def test_tsv_csv_jsonl_give_the_same_data(tmp_path):
    rows = [("a fine film", "pos", "q1"), ('he said "no" , twice', "neg", "q2"), ("commas, inside", "pos", "q3")]
    (tmp_path / "d.tsv").write_text("text\tpair\ty\n" + "".join(f"{t}\t{p}\t{y}\n" for t, y, p in rows))
    (tmp_path / "d.csv").write_text(
        "text,pair,y\n" + "".join('"{}",{},{}\n'.format(t.replace('"', '""'), p, y) for t, y, p in rows)
    )
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "pair": p, "y": y}) + "\n" for t, y, p in rows))
    columns = Columns(text="text", pair="pair", label="y")
    loaded = [load_labelled(tmp_path / f"d.{ext}", columns) for ext in ("tsv", "csv", "jsonl")]
    for data in loaded:
        assert data.texts == [r[0] for r in rows]
        assert data.pairs == ["q1", "q2", "q3"]
        assert data.label_names == ["neg", "pos"] and data.labels == [1, 0, 1]


def test_bad_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("sentence\tlabel\ngood one\t1\n\t0\nno label\t\nfine\t0\textra\n")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    message = str(err.value)
    assert "3 bad rows" in message and "line 3: empty 'sentence'" in message and "line 4: empty 'label'" in message
    assert "more fields than the header" in message
    data = load_labelled(path, skip_bad_rows=True)
    assert data.texts == ["good one"] and len(data.skipped) == 3


def test_bad_json_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sentence": "ok", "label": 1}\n{not json}\n[1, 2]\n{"sentence": "x"}\n')
    with pytest.raises(DataError) as err:
        load_labelled(path)
    assert "line 2: not valid JSON" in str(err.value) and "line 3: not a JSON object" in str(err.value)
    assert "line 4: missing column 'label'" in str(err.value)


def test_missing_columns_name_the_flags(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars\nnice,5\n")
    with pytest.raises(DataError, match="--text-column"):
        load_labelled(path)


def test_empty_and_mislabelled_data(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("sentence\tlabel\n")
    with pytest.raises(DataError, match="no usable labelled rows"):
        load_labelled(empty)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\nok\t1\nodd\t7\n")
    with pytest.raises(DataError, match=r"labels \['7'\] are not in the label set"):
        load_labelled(dev, label_names=["0", "1"])
    with pytest.raises(DataError, match="unsupported file type"):
        load_labelled(_touch(tmp_path / "x.parquet"))
    with pytest.raises(DataError, match="no such data file"):
        load_labelled(tmp_path / "missing.tsv")


def _touch(path):
    path.write_text("x")
    return path


def test_non_utf8_byte_is_located_by_file_line_even_past_the_read_buffer(tmp_path):
    """The csv reader decodes in chunks; the reported line must count from the file's start, not the chunk's."""
    path = tmp_path / "late.tsv"
    good = "".join(f"a perfectly fine sentence number {i}\t1\n" for i in range(2000))  # ~80 kB, many buffers
    path.write_bytes(b"sentence\tlabel\n" + good.encode() + b"caf\xe9 au lait\t0\n")
    with pytest.raises(DataError, match=r"line 2002 is not UTF-8 \(byte 0xe9\)"):
        load_labelled(path)
