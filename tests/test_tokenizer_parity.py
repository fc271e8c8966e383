"""Host encoder vs the app tokenizers (stdlib Python, pure Kotlin on the JVM), all reading tokenizer.json: at a fixed
length, and at the length bucket the apps pick (the shortest of tokenizer.json's sequence_lengths holding the text)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_tokenizer import sst2_dev
from conftest import random_unicode_texts
from toolkit import tokenizer as T
from toolkit.buckets import pick_length
from toolkit.files import atomic_write_text, cache_dir

ROOT = Path(__file__).resolve().parent.parent
KOTLIN_MODULE = ROOT / "sample_apps" / "android" / "tokenizer" / "src"
SEQ_LEN = 64
BUCKETS = (16, 32, SEQ_LEN)  # the exported tokenizer.json's sequence_lengths: dev sentences fall in all three

AWKWARD = [
    "Café naïve façade résumé Ångström", "e\u0301 a\u0300 o\u0308 combining marks", "😊 👍🏽 👨\u200d👩\u200d👧 🇫🇷 ❤️ emoji",
    "生活的真谛是 中文字符", "مرحبا بالعالم", "한국어 텍스트", "Ελληνικά κείμενο", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁ ﬂ ﬀ ligatures", "``quoted'' and \"plain\" and “curly”", "non\u00a0breaking\u202fnarrow", "zero\u200bwidth\u200cnon\u200djoin\ufeffbom",
    "tabs\tand\nnewlines\r\nand\u2028separators\u2029here\x85", "", "   ", "\t\n", "<s> hi<sep>there <mask> x <cls>",
    "1,000,000 people in 92000, ok", "▁already▁metaspace", "x\u07fd y", "\u0600\u200c\u0e35\u07fd", "ปี ด",
    "control\x01chars\x7f\x0b", "Ⅻ ㎏ ½ ™ ℃", " ".join(["long"] * 300), "a" * 500,
]
PAIRS = [("it 's a charming film .", "not bad at all"), ("", "empty first"), ("x " * 100, "short"), ("short", "y " * 100)]


def load_app_module():
    spec = importlib.util.spec_from_file_location("xlnet_tokenizer", ROOT / "sample_apps/raspberry_pi/xlnet_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def encoder() -> T.XLNetTextEncoder:
    return T.XLNetTextEncoder()


@pytest.fixture(scope="module")
def trimmed(encoder: T.XLNetTextEncoder) -> T.XLNetTextEncoder:
    """Student vocabulary collected from the first half of dev: the rest exercises unseen words."""
    return encoder.with_vocab_map(T.VocabMap(T.collect_used_ids(encoder, sst2_dev()[:436])))


@pytest.fixture(scope="module")
def exported(encoder, trimmed, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("portable")
    return {"full": encoder.export_portable(folder / "full.json", SEQ_LEN, BUCKETS),
            "trimmed": trimmed.export_portable(folder / "trimmed.json", SEQ_LEN, BUCKETS)}


def cases(encoder: T.XLNetTextEncoder, seq_len: int = SEQ_LEN) -> list[dict]:
    """Host-encoded golden cases: SST-2 dev, the awkward set, pairs."""
    out = []
    singles = sst2_dev() + AWKWARD
    batch = encoder.encode(singles, seq_len=seq_len)
    for i, text in enumerate(singles):
        out.append({"text": text, "pair": None, "seq_len": seq_len, "ids": batch.input_ids[i].tolist(),
                    "mask": batch.attention_mask[i].tolist(), "types": batch.token_type_ids[i].tolist()})
    batch = encoder.encode([a for a, _ in PAIRS], pairs=[b for _, b in PAIRS], seq_len=seq_len)
    for i, (a, b) in enumerate(PAIRS):
        out.append({"text": a, "pair": b, "seq_len": seq_len, "ids": batch.input_ids[i].tolist(),
                    "mask": batch.attention_mask[i].tolist(), "types": batch.token_type_ids[i].tolist()})
    return out


def bucketed_cases(encoder: T.XLNetTextEncoder) -> list[dict]:
    """The golden cases at the length bucket an app must pick: the shortest of BUCKETS holding all the case's tokens
    (specials included: the host's mask at the longest length counts them), the longest when none does (then cut, as
    at a fixed length). "seq_len": None tells the apps' checks to let the tokenizer pick."""
    by_length = {n: cases(encoder, n) for n in BUCKETS}
    picked = [pick_length(sum(case["mask"]), BUCKETS) for case in by_length[max(BUCKETS)]]
    return [{**by_length[n][i], "seq_len": None} for i, n in enumerate(picked)]


def python_app_matches(app, golden: list[dict]) -> list[int]:
    """Indexes of golden cases the Python app gets wrong (a case without seq_len: encode_bucketed)."""
    wrong = []
    for i, case in enumerate(golden):
        if case["seq_len"] is None:
            ids, mask, types = app.encode_bucketed(case["text"], case["pair"])
        else:
            ids, mask, types = app.encode(case["text"], case["pair"], case["seq_len"])
        if (ids, mask, types) != (case["ids"], case["mask"], case["types"]):
            wrong.append(i)
    return wrong


@pytest.mark.parametrize("which", ["full", "trimmed"])
def test_python_app_matches_host(which, encoder, trimmed, exported) -> None:
    host = encoder if which == "full" else trimmed
    app = load_app_module().XLNetTokenizer.load(exported[which])
    golden = cases(host)
    wrong = python_app_matches(app, golden)
    assert wrong == [], [golden[i]["text"][:60] for i in wrong[:5]]
    assert len(golden) == 872 + len(AWKWARD) + len(PAIRS)


@pytest.mark.parametrize("which", ["full", "trimmed"])
def test_python_app_picks_the_length_bucket_like_the_host(which, encoder, trimmed, exported) -> None:
    host = encoder if which == "full" else trimmed
    app = load_app_module().XLNetTokenizer.load(exported[which])
    assert app.lengths == list(BUCKETS)
    golden = bucketed_cases(host)
    assert {len(case["ids"]) for case in golden} == set(BUCKETS)  # every bucket is picked by some case
    wrong = python_app_matches(app, golden)
    assert wrong == [], [golden[i]["text"][:60] for i in wrong[:5]]


def test_python_app_matches_host_on_random_unicode(encoder, exported) -> None:
    texts = random_unicode_texts()
    host = encoder.encode(texts, seq_len=SEQ_LEN)
    app = load_app_module().XLNetTokenizer.load(exported["full"])
    wrong = [t for i, t in enumerate(texts) if app.encode(t, None, SEQ_LEN)[0] != host.input_ids[i].tolist()]
    assert wrong == []


def kotlin_jar() -> Path:
    """Compile the Kotlin tokenizer + its parity main once per source version (kotlinc takes ~15 s)."""
    kotlinc = shutil.which("kotlinc")
    if kotlinc is None:
        pytest.skip("kotlinc not installed (apt-get install kotlin)")
    sources = sorted(KOTLIN_MODULE.rglob("*.kt"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    jar = cache_dir("tokenizer", "kotlin") / f"parity-{digest}.jar"
    if not jar.is_file():
        partial = jar.with_suffix(".partial.jar")
        result = subprocess.run([kotlinc, *map(str, sources), "-include-runtime", "-d", str(partial)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        partial.replace(jar)
    return jar


@pytest.mark.parametrize("which", ["full", "trimmed"])
def test_kotlin_tokenizer_matches_host(which, encoder, trimmed, exported, tmp_path) -> None:
    jar = kotlin_jar()
    host = encoder if which == "full" else trimmed
    golden = tmp_path / "golden.json"
    atomic_write_text(golden, json.dumps(cases(host), ensure_ascii=False))
    result = subprocess.run(["java", "-cp", str(jar), "org.xlnetedge.tokenizer.ParityMainKt",
                             str(exported[which]), str(golden)], capture_output=True, text=True, timeout=120)
    expected = 872 + len(AWKWARD) + len(PAIRS)
    assert result.returncode == 0 and f"ok {expected}/{expected}" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("which", ["full", "trimmed"])
def test_kotlin_tokenizer_picks_the_length_bucket_like_the_host(which, encoder, trimmed, exported, tmp_path) -> None:
    """encodeBucketed: each case at the bucket the host picks, ids, mask and types identical to the host's there."""
    jar = kotlin_jar()
    golden = bucketed_cases(encoder if which == "full" else trimmed)
    assert {len(case["ids"]) for case in golden} == set(BUCKETS)
    path = tmp_path / "golden.json"
    atomic_write_text(path, json.dumps(golden, ensure_ascii=False))
    result = subprocess.run(["java", "-cp", str(jar), "org.xlnetedge.tokenizer.ParityMainKt",
                             str(exported[which]), str(path)], capture_output=True, text=True, timeout=120)
    expected = len(golden)
    assert result.returncode == 0 and f"ok {expected}/{expected}" in result.stdout, result.stdout[-2000:]


def test_trimmed_path_differs_from_full_only_by_design(encoder, trimmed) -> None:
    """On the texts the map was collected from, trimmed ids are the mapped full ids, exactly."""
    seen = sst2_dev()[:436]
    np.testing.assert_array_equal(trimmed.encode(seen, seq_len=SEQ_LEN).input_ids,
                                  trimmed.vocab_map.to_student(encoder.encode(seen, seq_len=SEQ_LEN).input_ids))
