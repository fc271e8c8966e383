"""The Raspberry Pi sample apps on a real (tiny) bundle: the Python .tflite app and the C++ ExecuTorch app.

What is checked, each against the HOST (the host encoder's inputs run by the artifact's runtime, each text in the
length bucket an app picks for it: ``toolkit.manifest.run_on_host``):
- both apps on the host, for the attention_mask bundle and the NNAPI-style additive_bias bundle;
- both apps UNDER EMULATION on the Raspberry Pi 4 CPU (qemu-aarch64 -cpu cortex-a72 with the rootfs, fake
  /proc/cpuinfo and runtime site folders that ``toolkit.emulate`` uses): same labels, fp32 logits within 1e-5;
  the Python app with ai-edge-litert and with tflite-runtime 2.14;
- the C++ tokenizer gives exactly the host encoder's ids, mask and types on all 872 SST-2 dev sentences, the
  awkward-Unicode set and sentence pairs (x86_64 build, and the aarch64 build under emulation);
- clear errors for a missing bundle or model;
- every app's self-test (``classify.py --self-test``, ``classify_pte --self-test``, the Android app's startup check
  on the JVM) passes on the bundle's selftest.json on the host and under emulation (Pi 4 and android-arm64 CPUs), and
  fails (exit 1) when the expected outputs or the golden ids are tampered with, or refuses (exit 2) a selftest.json
  whose sha256 is not the manifest's;
- every app (Python, C++, the Android app's Kotlin bundle code on the JVM) refuses, before loading a model, a file
  whose SHA-256 differs from the manifest's, a manifest "file" leading out of the bundle (``..``, absolute, symlink),
  an artifact marked ``valid: false`` and one without a ``sha256``; the C++ app's own SHA-256 (sha256.h) gives the
  FIPS 180-4 vectors and hashlib's digests. The emulated runs on the untouched bundle show that the aarch64 build's
  SHA-256 agrees with the host's too (a different digest would refuse the model).

Run with ``-s`` to see the counts and the emulated timings. Emulator tests are marked ``emulator``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bundle_fixture import LENGTHS, build_tiny_bundle, bundle_encoder, host_inputs, sst2_dev_sentences
from tests.test_tokenizer_parity import AWKWARD, PAIRS
from conftest import random_unicode_texts
from toolkit import emulate
from toolkit.buckets import at_length, pick_length
from toolkit.manifest import run_on_host
from toolkit.files import PROJECT_ROOT, cache_dir
from toolkit.profiles import load_profile
from toolkit.pte_runner import (
    DEVICE_EXECUTORCH_LIB,
    aarch64_executorch_dir,
    host_executorch_dir,
    new_partial_dir,
    publish_dir,
)
from toolkit.tokenizer import XLNetTextEncoder, build_xlnet_tokenizer

APP_DIR = PROJECT_ROOT / "sample_apps" / "raspberry_pi"
ANDROID_DIR = PROJECT_ROOT / "sample_apps" / "android"
# The Android app's bundle handling is pure Kotlin: it compiles on the JVM with the tokenizer module.
KOTLIN_SOURCES = [*sorted((ANDROID_DIR / "tokenizer" / "src" / "main").rglob("*.kt")),
                  ANDROID_DIR / "app/src/main/kotlin/org/xlnetedge/app/Bundle.kt",
                  ANDROID_DIR / "app/src/main/kotlin/org/xlnetedge/app/SelfTest.kt",
                  ANDROID_DIR / "app/src/test/kotlin/org/xlnetedge/app/BundleInputsMain.kt",
                  ANDROID_DIR / "app/src/test/kotlin/org/xlnetedge/app/VerifyModelMain.kt",
                  ANDROID_DIR / "app/src/test/kotlin/org/xlnetedge/app/SelfTestMain.kt"]  # fmt: skip
CPP_DIR = APP_DIR / "cpp"
CPP_SOURCES = ("build.sh", "classify_pte.cpp", "mini_json.h", "sha256.h", "xlnet_tokenize.cpp", "xlnet_tokenizer.cpp",
               "xlnet_tokenizer.h")  # fmt: skip
PI4 = load_profile("raspberry-pi-4").device  # cortex-a72
FP32_ATOL = 1e-5  # same runtime, fp32, x86 vs emulated ARM: measured differences are ~1e-7
SENTENCES = [
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "Café naïve façade : a résumé of crème brûlée",
    "😊 great fun 👍🏽 ❤️ 生活",
    "",
    "a gorgeous , witty , seductive movie that keeps you guessing .",  # 17-32 tokens: the 32 bucket
    "the film is long , " * 12,  # past the bundle's 32 tokens: truncated
]


# ------------------------------------------------------------------------------------------------ helpers


def build_cpp_app(arch: str) -> Path:
    """Build (or reuse) classify_pte and xlnet_tokenize for ``arch`` with the app's build.sh; returns their folder.

    Cached under ``cache_dir("sample_apps")`` by a hash of the sources, the arch and the executorch libraries.
    x86_64 links the installed executorch wheel; aarch64 is cross-built against the aarch64 wheel and finds its
    libraries at /opt/executorch/lib, where the emulator's rootfs (and the README's Pi install) puts them.
    """
    if arch == "x86_64":
        executorch_dir, rpath = host_executorch_dir(), None
        version = importlib.metadata.version("executorch")
    else:
        executorch_dir, rpath = aarch64_executorch_dir(), DEVICE_EXECUTORCH_LIB
        version = "aarch64 wheel"
    digest = hashlib.sha256(f"{arch}\0{executorch_dir}\0{version}".encode())
    for name in CPP_SOURCES:
        digest.update(name.encode() + b"\0" + (CPP_DIR / name).read_bytes())
    folder = cache_dir("sample_apps") / f"cpp-{arch}-{digest.hexdigest()[:16]}"
    if (folder / ".complete").is_file():
        return folder
    partial = new_partial_dir(folder)
    command = ["sh", str(CPP_DIR / "build.sh"), arch, str(executorch_dir), str(partial)] + ([rpath] if rpath else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"building the {arch} C++ app failed:\n$ {' '.join(command)}\n{result.stderr[-4000:]}")
    (partial / ".complete").write_text(" ".join(command) + "\n")
    return publish_dir(partial, folder, ".complete")


def android_bundle_jar() -> Path:
    """Compile the Android app's Bundle.kt + the tokenizer module + a JVM main once per source version (~15 s)."""
    kotlinc = shutil.which("kotlinc")
    if kotlinc is None:
        pytest.skip("kotlinc not installed (apt-get install kotlin)")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in KOTLIN_SOURCES)).hexdigest()[:16]
    jar = cache_dir("sample_apps", "kotlin") / f"bundle-inputs-{digest}.jar"
    if not jar.is_file():
        partial = jar.with_suffix(".partial.jar")
        result = subprocess.run([kotlinc, *map(str, KOTLIN_SOURCES), "-include-runtime", "-d", str(partial)],
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        partial.replace(jar)
    return jar


def run_emulated(program: list[str], env: dict[str, str], device=PI4) -> tuple[subprocess.CompletedProcess, float]:
    """Run a guest program on an emulated CPU (default the Raspberry Pi 4's), as toolkit.emulate does;
    (result, wall seconds)."""
    command = [emulate.QEMU, "-cpu", device.qemu_cpu, "-L", str(emulate.device_root(device)), *program]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return result, time.monotonic() - started


def app_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def host_reference(bundle: Path, name: str, texts: list[str], runtime: str | None = None) -> np.ndarray:
    """The host runtime's logits for ``texts``, each run in the length bucket an app picks for it (``.tflite``:
    ai-edge-litert unless ``runtime`` says otherwise)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = next(a for a in manifest["artifacts"] if a["name"] == name)
    runtime = runtime or ("ai-edge-litert" if record["format"] == "tflite" else record["runtime"])
    return run_on_host({**record, "runtime": runtime}, bundle / record["file"], host_inputs(bundle, texts))


def expected_buckets(bundle: Path, texts: list[str]) -> list[int]:
    """The length bucket each text must run in: the shortest that holds all its tokens, else the longest."""
    tokens = host_inputs(bundle, texts)[0] != 5  # <pad> is 5
    return [pick_length(int(n), LENGTHS) for n in tokens.sum(axis=1)]


def test_sentences_cover_every_bucket_and_a_longer_text(bundle: Path) -> None:
    buckets = expected_buckets(bundle, SENTENCES)
    tokens = (host_inputs(bundle, SENTENCES)[0] != 5).sum(axis=1)
    assert set(buckets) == set(LENGTHS) and tokens.max() == LENGTHS[-1]  # the long one was cut to the longest
    assert len(bundle_encoder(bundle).text_ids([SENTENCES[-1]])[0]) > LENGTHS[-1]


def assert_matches_host(output: dict, bundle: Path, host_logits: np.ndarray) -> None:
    """Same texts in order, each run in the expected length bucket, same labels as the host's argmax, logits within
    the fp32 tolerance."""
    results = output["results"]
    labels = json.loads((bundle / "labels.json").read_text())
    assert [r["text"] for r in results] == SENTENCES
    assert [r["sequence_length"] for r in results] == expected_buckets(bundle, SENTENCES)
    assert [r["label"] for r in results] == [labels[i] for i in host_logits.argmax(axis=1)]
    np.testing.assert_allclose(np.array([r["logits"] for r in results]), host_logits, rtol=0, atol=FP32_ATOL)
    for r in results:
        assert sum(r["scores"].values()) == pytest.approx(1.0, abs=1e-5)


def python_app_command(bundle: Path, *args: str) -> list[str]:
    return [str(APP_DIR / "classify.py"), "--bundle", str(bundle), "--json", *args, *SENTENCES]


def with_checksums(bundle: Path) -> Path:
    """Record each artifact's sha256 in the manifest, as a real export does (the apps refuse a model without one)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for record in manifest["artifacts"]:
        record["sha256"] = hashlib.sha256((bundle / record["file"]).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return bundle


INSIDE_ONLY = "refusing to load it (a manifest may only name files inside its bundle)"
TAMPERINGS = ["flipped byte", "parent path", "absolute path", "symlink out", "valid false", "no sha256"]


def tampered_bundle(bundle: Path, folder: Path, how: str) -> tuple[Path, dict[str, str]]:
    """A copy of ``bundle`` in ``folder`` tampered with as ``how`` says, and the refusal each artifact must get.

    Files that a manifest points outside the bundle are exact copies of the models (their sha256 matches), so only
    the path is wrong. Returns (bundle copy, {artifact name: the whole refusal message}).
    """
    copy = Path(shutil.copytree(bundle, folder / "bundle"))
    manifest = json.loads((copy / "manifest.json").read_text())
    messages = {}
    for record in manifest["artifacts"]:
        name, model = record["name"], copy / record["file"]
        outside = folder / f"outside.{record['format']}"
        shutil.copy(model, outside)
        where = f"{copy}/manifest.json: artifact '{name}'"
        if how == "flipped byte":
            data = bytearray(model.read_bytes())
            data[len(data) // 2] ^= 0xFF
            model.write_bytes(bytes(data))
            messages[name] = (f"{model}: sha256 {hashlib.sha256(data).hexdigest()} does not match the manifest's "
                              f"{record['sha256']}; the file is corrupted or was replaced — re-export the bundle")
        elif how == "parent path":
            record["file"] = f"../{outside.name}"
            messages[name] = (f'{where} has "file": "{record["file"]}", which leads out of the bundle folder {copy}; '
                              f"{INSIDE_ONLY}")
        elif how == "absolute path":
            record["file"] = str(outside)
            messages[name] = f'{where} has "file": "{outside}", an absolute path; {INSIDE_ONLY}'
        elif how == "symlink out":
            (copy / "models" / f"link.{record['format']}").symlink_to(outside)
            record["file"] = f"models/link.{record['format']}"
            messages[name] = (f'{where} has "file": "{record["file"]}", which resolves to {outside.resolve()}, outside '
                              f"the bundle folder {copy}; {INSIDE_ONLY}")
        elif how == "valid false":
            record["valid"] = False
            messages[name] = (f"{where} is marked \"valid\": false (it failed the export's checks; see the bundle's "
                              "report.md); refusing to load it: pick a valid artifact or re-export the bundle")
        elif how == "no sha256":
            del record["sha256"]
            messages[name] = (f'{where} has no "sha256", so {model} cannot be verified; refusing to load it: '
                              "re-export the bundle")
        else:
            raise ValueError(how)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return copy, messages


def tokenizer_cases() -> list:
    """SST-2 dev, the awkward set (accents, emoji, CJK, long inputs, empty strings ...), then [text, pair] pairs."""
    return sst2_dev_sentences() + AWKWARD + [list(pair) for pair in PAIRS]


def host_encodings(encoder: XLNetTextEncoder, seq_len: int) -> list[list[list[int]]]:
    """[ids, mask, types] per tokenizer case, from the host encoder."""
    singles = sst2_dev_sentences() + AWKWARD
    out = []
    for batch in (encoder.encode(singles, seq_len=seq_len),
                  encoder.encode([a for a, _ in PAIRS], pairs=[b for _, b in PAIRS], seq_len=seq_len)):  # fmt: skip
        out += [[batch.input_ids[i].tolist(), batch.attention_mask[i].tolist(), batch.token_type_ids[i].tolist()]
                for i in range(len(batch))]  # fmt: skip
    return out


def host_bucketed_encodings(encoder: XLNetTextEncoder, lengths: tuple[int, ...]) -> list[list[list[int]]]:
    """[ids, mask, types] per tokenizer case at the length bucket an app picks for it: the shortest of ``lengths``
    holding all its tokens (the mask at the longest length counts them, specials included), else the longest (cut)."""
    by_length = {n: host_encodings(encoder, n) for n in lengths}
    return [by_length[pick_length(sum(case[1]), lengths)][i] for i, case in enumerate(by_length[max(lengths)])]


def parse_tokenize_output(stdout: str) -> list[list[list[int]]]:
    """xlnet_tokenize prints ``ids<TAB>mask<TAB>types`` per case."""
    return [[[int(v) for v in field.split()] for field in line.split("\t")] for line in stdout.splitlines()]


def mismatches(got: list, expected: list) -> list[int]:
    """Indexes of the cases whose encodings differ."""
    assert len(got) == len(expected), f"{len(got)} lines for {len(expected)} cases"
    return [i for i, (g, e) in enumerate(zip(got, expected)) if g != e]


def group_counts(wrong: list[int]) -> str:
    """'872/872 SST-2 dev, 26/26 awkward, 4/4 pairs' identical, for the tokenizer_cases() order."""
    groups = [("SST-2 dev", 872), ("awkward", len(AWKWARD)), ("pairs", len(PAIRS))]
    parts, start = [], 0
    for name, size in groups:
        bad = sum(1 for i in wrong if start <= i < start + size)
        parts.append(f"{size - bad}/{size} {name}")
        start += size
    return ", ".join(parts) + " identical"


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_checksums(build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny"))


@pytest.fixture(scope="module")
def bias_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The NNAPI-style signature: a float32 mask_bias input instead of the int32 attention_mask."""
    folder = tmp_path_factory.mktemp("bundle") / "tiny-bias"
    return with_checksums(build_tiny_bundle(folder, mask_input="additive_bias"))


@pytest.fixture(scope="module")
def host_cpp() -> Path:
    return build_cpp_app("x86_64")


@pytest.fixture(scope="module")
def emulator() -> None:
    missing = emulate._missing_tools()
    if missing:
        pytest.skip("emulator not installed: sudo scripts/install-emulator-deps.sh\n" + "\n".join(missing))
    emulate.ensure_rootfs()


@pytest.fixture(scope="module")
def device_cpp(emulator: None) -> Path:
    return build_cpp_app("aarch64")


# ------------------------------------------------------------------------------------------------ on the host


@pytest.mark.parametrize("which", ["bundle", "bias_bundle"])
def test_python_app_on_host_matches_host_runtime(which: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(which)
    manifest = json.loads((folder / "manifest.json").read_text())
    tflite = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    assert [i["name"] for i in tflite["inputs"]][1] == ("attention_mask" if which == "bundle" else "mask_bias")
    result = subprocess.run([sys.executable, *python_app_command(folder, "--runtime", "ai-edge-litert")],
                            capture_output=True, text=True)  # fmt: skip
    output = app_json(result)
    assert output["model"] == tflite["name"] and output["runtime"] == "ai-edge-litert"
    assert_matches_host(output, folder, host_reference(folder, tflite["name"], SENTENCES))


@pytest.mark.parametrize("which", ["bundle", "bias_bundle"])
def test_cpp_app_on_host_matches_host_runtime(which: str, request: pytest.FixtureRequest, host_cpp: Path) -> None:
    folder: Path = request.getfixturevalue(which)
    result = subprocess.run([str(host_cpp / "classify_pte"), "--json", str(folder), "pte-fp32", *SENTENCES],
                            capture_output=True, text=True)  # fmt: skip
    output = app_json(result)
    assert output["model"] == "pte-fp32"
    assert_matches_host(output, folder, host_reference(folder, "pte-fp32", SENTENCES))


@pytest.mark.parametrize("which", ["bundle", "bias_bundle"])
def test_android_app_builds_the_manifest_inputs(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The Android app's input building (Bundle.kt, run on the JVM): int32 ids/masks, float32 mask_bias, in the
    manifest's order, equal to the host's model_inputs for both the tflite and the pte artifact — each text at the
    length bucket it runs in (the last L columns of the host's inputs: padding is on the left), with the specs of that
    bucket's method and that method's name."""
    folder: Path = request.getfixturevalue(which)
    (tmp_path / "texts.json").write_text(json.dumps(SENTENCES, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run(["java", "-cp", str(android_bundle_jar()), "org.xlnetedge.app.BundleInputsMainKt",
                             str(folder), str(tmp_path / "texts.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    manifest = json.loads((folder / "manifest.json").read_text())
    host = host_inputs(folder, SENTENCES)
    buckets = expected_buckets(folder, SENTENCES)
    assert set(buckets) == set(LENGTHS)
    expected = []
    for artifact in (next(a for a in manifest["artifacts"] if a["format"] == f) for f in ("tflite", "pte")):
        methods = {m["sequence_length"]: m for m in artifact["methods"]}
        assert sorted(methods) == sorted(LENGTHS)
        for n, length in enumerate(buckets):
            method = methods[length]
            for spec, array in zip(method["inputs"], at_length(host, length), strict=True):
                assert array.dtype == np.dtype(spec["dtype"]) and spec["shape"] == [1, length]
                expected.append([artifact["name"], method["name"], spec["name"], spec["dtype"], array[n].tolist()])
    got = [[name, method, input_name, dtype, [(float if dtype == "float32" else int)(v) for v in values.split()]]
           for name, method, input_name, dtype, values in rows]  # fmt: skip
    assert got == expected


def test_apps_read_stdin_and_print_one_line_per_text(bundle: Path, host_cpp: Path) -> None:
    """Without texts on the command line both apps classify stdin line by line and print readable lines."""
    stdin = "it 's a charming and often affecting journey . \r\nunflinchingly bleak and desperate \n"
    expected = json.loads((bundle / "labels.json").read_text())
    host = host_reference(bundle, "pte-fp32", stdin.replace("\r", "").splitlines())
    commands = [[sys.executable, str(APP_DIR / "classify.py"), "--bundle", str(bundle)],
                [str(host_cpp / "classify_pte"), str(bundle), "pte-fp32"]]  # fmt: skip
    for command in commands:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]
        lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
        assert [line.split()[0] for line in lines] == [expected[i] for i in host.argmax(axis=1)], result.stdout
        assert all(" ms  | " in line and "negative=" in line for line in lines)


def test_apps_report_a_missing_bundle_or_model(bundle: Path, host_cpp: Path, tmp_path: Path) -> None:
    python_app = [sys.executable, str(APP_DIR / "classify.py")]
    checks = [
        (python_app + ["--bundle", str(tmp_path / "nowhere"), "x"], "no bundle folder at"),
        (python_app + ["--bundle", str(bundle), "--model", "tflite-nope", "x"], "no artifact named 'tflite-nope'"),
        (python_app + ["--bundle", str(bundle), "--model", "pte-fp32", "x"], "this app runs .tflite"),
        ([str(host_cpp / "classify_pte"), str(tmp_path / "nowhere"), "pte-fp32", "x"], "no bundle folder at"),
        ([str(host_cpp / "classify_pte"), str(bundle), "pte-nope", "x"], "'pte-nope' is not an artifact"),
        ([str(host_cpp / "classify_pte"), str(bundle), "tflite-fp32", "x"], "this app runs .pte"),
    ]
    for command, message in checks:
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 2 and message in result.stderr, (command, result.stderr[-1000:])
    (tmp_path / "partial").mkdir()
    shutil.copy(bundle / "manifest.json", tmp_path / "partial")
    result = subprocess.run(python_app + ["--bundle", str(tmp_path / "partial"), "x"], capture_output=True, text=True)
    assert result.returncode == 2 and "labels.json is missing" in result.stderr


@pytest.mark.parametrize("how", TAMPERINGS)
def test_apps_refuse_a_tampered_model_before_loading_it(how: str, bundle: Path, host_cpp: Path, tmp_path: Path) -> None:
    """Python app, C++ app and the Android app's check (Bundle.kt's verifyModelFile on the JVM): exit code 2, the
    whole refusal message, nothing classified."""
    copy, messages = tampered_bundle(bundle, tmp_path, how)
    runs = [
        ("tflite-fp32", [sys.executable, str(APP_DIR / "classify.py"), "--bundle", str(copy), "--model", "tflite-fp32",
                         "x"]),
        ("pte-fp32", [str(host_cpp / "classify_pte"), str(copy), "pte-fp32", "x"]),
        ("tflite-fp32", ["java", "-cp", str(android_bundle_jar()), "org.xlnetedge.app.VerifyModelMainKt", str(copy),
                         "tflite-fp32", "pte-fp32"]),
    ]  # fmt: skip
    for name, command in runs:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == "", (command, result.stdout, result.stderr[-2000:])
        assert messages[name] in result.stderr, (command, messages[name], result.stderr[-2000:])


def test_android_check_passes_the_untouched_bundle(bundle: Path) -> None:
    """verifyModelFile accepts the untouched bundle's default tflite and pte (the Python and C++ apps' runs on it
    are the tests above)."""
    result = subprocess.run(["java", "-cp", str(android_bundle_jar()), "org.xlnetedge.app.VerifyModelMainKt",
                             str(bundle)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    defaults = [next(r for r in manifest["artifacts"] if r["format"] == f) for f in ("tflite", "pte")]
    expected = [[r["name"], str(bundle / r["file"]), r["sha256"]] for r in defaults]
    assert [line.split("\t") for line in result.stdout.splitlines()] == expected


# ------------------------------------------------------------------------------------------------ self-tests


def self_test_commands(folder: Path, cpp: Path | None, observed: Path | None = None) -> dict[str, list[str]]:
    """The apps' self-tests on ``folder``: Python and C++ (``cpp``: the build folder), and with ``observed`` (the
    host's logits) the Android startup check on the JVM."""
    commands = {"python": [sys.executable, str(APP_DIR / "classify.py"), "--self-test", str(folder)]}
    if cpp is not None:
        commands["cpp"] = [str(cpp / "classify_pte"), "--self-test", str(folder)]
    if observed is not None:
        commands["kotlin"] = ["java", "-cp", str(android_bundle_jar()), "org.xlnetedge.app.SelfTestMainKt",
                              str(folder), str(observed)]  # fmt: skip
    return commands


def observed_logits(folder: Path, path: Path) -> Path:
    """What LiteRT and ExecuTorch give on the golden texts, for the Kotlin check (no runtime on a plain JVM): the
    host's ai-edge-litert and ExecuTorch on the host's inputs, written as {artifact name: [[logits], ...]}."""
    manifest = json.loads((folder / "manifest.json").read_text())
    texts = [e["text"] for e in json.loads((folder / "selftest.json").read_text())["examples"]]
    logits = {record["name"]: host_reference(folder, record["name"], texts).tolist() for record in manifest["artifacts"]}
    path.write_text(json.dumps(logits))
    return path


def rewrite_selftest(bundle: Path, folder: Path, edit, update_digest: bool = True) -> Path:
    """A copy of ``bundle`` whose selftest.json ``edit`` changed; the manifest's digest follows unless told not to
    (a genuinely different expectation, rather than a corrupted file)."""
    copy = Path(shutil.copytree(bundle, folder / "bundle"))
    doc = json.loads((copy / "selftest.json").read_text())
    edit(doc)
    (copy / "selftest.json").write_text(json.dumps(doc, indent=1))
    if update_digest:
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["selftest"]["sha256"] = hashlib.sha256((copy / "selftest.json").read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return copy


def shift_expected_logits(doc: dict) -> None:
    """Move every expected logit by 1000x the float tolerance: what a model computing wrongly on the device shows."""
    for golden in doc["artifacts"].values():
        golden["logits"] = [[v + 0.1 for v in row] for row in golden["logits"]]


def change_golden_ids(doc: dict) -> None:
    """One golden token id changed: what a tokenizer that segments differently from the host shows."""
    ids = doc["examples"][0]["input_ids"]
    ids[-3] = ids[-3] + 1


@pytest.mark.parametrize("app", ["python", "cpp", "kotlin"])
@pytest.mark.parametrize("which", ["bundle", "bias_bundle"])
def test_self_tests_pass_on_host(app: str, which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Python app, C++ app and the Android startup check (JVM, with the host runtimes' logits): PASS, exit 0, with
    the tokenizer line and each model's figure and tolerance printed."""
    folder: Path = request.getfixturevalue(which)
    doc = json.loads((folder / "selftest.json").read_text())
    assert len(doc["examples"]) == 4 and set(doc["artifacts"]) == {"pte-fp32", "tflite-fp32"}
    assert all(golden["atol"] == 1e-4 for golden in doc["artifacts"].values())  # float models: the emulator bound
    expected_models = {"python": ["tflite-fp32"], "cpp": ["pte-fp32"], "kotlin": ["tflite-fp32", "pte-fp32"]}
    commands = self_test_commands(folder, request.getfixturevalue("host_cpp") if app == "cpp" else None,
                                  observed_logits(folder, tmp_path / "obs.json") if app == "kotlin" else None)
    for command in [commands[app]]:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (app, result.stdout, result.stderr[-2000:])
        out = result.stdout
        assert "tokenizer: 4/4 texts give the golden input_ids, attention_mask and token_type_ids (exact) -> PASS" in out
        for model in expected_models[app]:
            assert f"\n{model}" in out and "<= tolerance 0.0001? yes; labels 4/4 as expected -> PASS" in out, out
        assert "tolerance: float model: max |logit diff| <= 0.0001" in out
        assert out.rstrip().endswith("self-test: PASS"), (app, out)
        print(f"\n{app} self-test on the host ({which}):\n{out}")


@pytest.mark.parametrize("app", ["python", "cpp", "kotlin"])
@pytest.mark.parametrize("how", ["expected outputs", "golden ids", "digest"])
def test_self_tests_fail_on_a_tampered_selftest(app: str, how: str, bundle: Path, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    """Expected logits that the models do not give, or golden ids the tokenizer does not give: FAIL, exit 1, the
    failing line says what; a selftest.json edited without the manifest's digest following: refused, exit 2."""
    edit = change_golden_ids if how == "golden ids" else shift_expected_logits
    copy = rewrite_selftest(bundle, tmp_path, edit, update_digest=how != "digest")
    commands = self_test_commands(copy, request.getfixturevalue("host_cpp") if app == "cpp" else None,
                                  observed_logits(bundle, tmp_path / "obs.json") if app == "kotlin" else None)
    for command in [commands[app]]:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if how == "digest":
            assert result.returncode == 2, (app, result.stdout, result.stderr[-2000:])
            assert f"{copy / 'selftest.json'}: sha256" in result.stderr and "does not match the manifest's" in \
                result.stderr, (app, result.stderr)
            continue
        assert result.returncode == 1, (app, result.stdout, result.stderr[-2000:])
        out = result.stdout
        assert out.rstrip().endswith("self-test: FAIL"), (app, out)
        if how == "golden ids":
            assert "tokenizer: 3/4 texts give the golden" in out and "-> FAIL" in out, (app, out)
            assert "text 0 " in out
        else:
            assert "tokenizer: 4/4" in out and "<= tolerance 0.0001? NO" in out and "-> FAIL" in out, (app, out)


def test_self_test_refuses_a_bundle_without_one(bundle: Path, host_cpp: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["selftest"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for app, command in self_test_commands(copy, host_cpp, tmp_path / "never-read.json").items():
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and 'lists no "selftest" file' in result.stderr, (app, result.stderr)


SHA256_VECTORS = {  # FIPS 180-4 examples
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
}  # fmt: skip


def test_cpp_sha256_matches_known_vectors_and_hashlib(bundle: Path, tmp_path: Path) -> None:
    """sha256.h (the C++ app's own SHA-256): the FIPS vectors, every length from 0 to 300 bytes (all padding
    cases) and the bundle's models, each fed in chunks of 1, 7, 64 and 65536 bytes."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not installed")
    (tmp_path / "sha256_files.cpp").write_text(r"""
        #include <fstream>
        #include <iostream>
        #include <iterator>
        #include <string>
        #include "sha256.h"
        // sha256_files CHUNK FILE...: one hex digest per file, fed to Sha256::update CHUNK bytes at a time
        int main(int argc, char** argv) {
          size_t chunk = std::stoul(argv[1]);
          for (int i = 2; i < argc; ++i) {
            std::ifstream in(argv[i], std::ios::binary);
            std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            Sha256 hash;
            for (size_t at = 0; at < data.size(); at += chunk) {
              hash.update(data.data() + at, std::min(chunk, data.size() - at));
            }
            std::cout << hash.hex_digest() << "\n";
          }
        }
    """)
    program = tmp_path / "sha256_files"
    subprocess.run([compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{CPP_DIR}",
                    str(tmp_path / "sha256_files.cpp"), "-o", str(program)], check=True)  # fmt: skip
    rng = np.random.default_rng(0)
    contents = list(SHA256_VECTORS) + [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in range(301)]
    files = []
    for i, content in enumerate(contents):
        files.append(tmp_path / f"case{i}.bin")
        files[-1].write_bytes(content)
    files += sorted((bundle / "models").iterdir())
    expected = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert expected[: len(SHA256_VECTORS)] == list(SHA256_VECTORS.values())
    for chunk in (1, 7, 64, 65536):
        result = subprocess.run([str(program), str(chunk), *map(str, files)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == expected, f"chunk {chunk}"


@pytest.mark.parametrize("vocab", ["full", "trimmed"])
def test_cpp_tokenizer_matches_host_encoder(vocab: str, bundle: Path, host_cpp: Path, tmp_path: Path) -> None:
    """At a fixed length, then at the length bucket classify_pte picks (xlnet_tokenize ... buckets)."""
    seq_len = 64  # longer than the bundle's 32, so fewer cases are truncated and more ids are compared
    buckets = (16, 32, seq_len)
    encoder = XLNetTextEncoder(build_xlnet_tokenizer()) if vocab == "full" else bundle_encoder(bundle)
    tokenizer_json = encoder.export_portable(tmp_path / "tokenizer.json", seq_len, buckets)
    cases = tokenizer_cases()
    (tmp_path / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run([str(host_cpp / "xlnet_tokenize"), str(tokenizer_json), str(tmp_path / "cases.json")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    wrong = mismatches(parse_tokenize_output(result.stdout), host_encodings(encoder, seq_len))
    print(f"\nC++ tokenizer ({vocab} vocab, x86_64) vs host: {group_counts(wrong)}")
    assert wrong == [], [repr(cases[i])[:60] for i in wrong[:5]]
    result = subprocess.run([str(host_cpp / "xlnet_tokenize"), str(tokenizer_json), str(tmp_path / "cases.json"),
                             "buckets"], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = host_bucketed_encodings(encoder, buckets)
    assert {len(ids) for ids, _, _ in expected} == set(buckets)  # every bucket is picked by some case
    wrong = mismatches(parse_tokenize_output(result.stdout), expected)
    print(f"C++ tokenizer at the picked length bucket {buckets} vs host: {group_counts(wrong)}")
    assert wrong == [], [repr(cases[i])[:60] for i in wrong[:5]]


def test_cpp_tokenizer_matches_host_on_random_unicode(host_cpp: Path, tmp_path: Path) -> None:
    """2,000 random strings over the characters that exercise every normalisation and segmentation rule.

    The same pool and seed as test_tokenizer_parity's random test of the Python app tokenizer.
    """
    texts = random_unicode_texts()
    encoder = XLNetTextEncoder(build_xlnet_tokenizer())
    tokenizer_json = encoder.export_portable(tmp_path / "tokenizer.json", 64)
    (tmp_path / "cases.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    result = subprocess.run([str(host_cpp / "xlnet_tokenize"), str(tokenizer_json), str(tmp_path / "cases.json")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    got = [line[0] for line in parse_tokenize_output(result.stdout)]
    wrong = mismatches(got, encoder.encode(texts, seq_len=64).input_ids.tolist())
    assert wrong == [], [texts[i] for i in wrong[:5]]


# ------------------------------------------------------------------------------------------------ emulated Pi 4


@pytest.mark.emulator
@pytest.mark.parametrize("runtime", list(emulate.RUNTIME_SITES))
def test_python_app_on_emulated_pi4_matches_host(emulator: None, bundle: Path, runtime: str) -> None:
    """The app as a Pi runs it: Debian's arm64 python3 with only numpy + one LiteRT runtime on its path."""
    site, _ = emulate.RUNTIME_SITES[runtime]
    python3 = emulate.device_root(PI4) / "usr" / "bin" / "python3"
    result, wall = run_emulated([str(python3), *python_app_command(bundle, "--runtime", runtime)],
                                emulate._guest_env(site))  # fmt: skip
    output = app_json(result)
    assert output["runtime"] == runtime
    # The host reference runs the same runtime package (TF's and LiteRT's kernels differ; see export-facts).
    host = host_reference(bundle, "tflite-fp32", SENTENCES, runtime)
    assert_matches_host(output, bundle, host)
    latencies = [round(r["inference_ms"], 1) for r in output["results"]]
    print(f"\nclassify.py/{runtime} on emulated {PI4.qemu_cpu}: {len(SENTENCES)} texts, labels match the host; "
          f"process {wall:.1f} s, emulated inference ms {latencies}")  # fmt: skip


@pytest.mark.emulator
def test_cpp_app_on_emulated_pi4_matches_host(bundle: Path, device_cpp: Path) -> None:
    result, wall = run_emulated([str(device_cpp / "classify_pte"), "--json", str(bundle), "pte-fp32", *SENTENCES],
                                emulate._guest_env())  # fmt: skip
    output = app_json(result)
    assert_matches_host(output, bundle, host_reference(bundle, "pte-fp32", SENTENCES))
    latencies = [round(r["inference_ms"], 1) for r in output["results"]]
    print(f"\nclassify_pte on emulated {PI4.qemu_cpu}: {len(SENTENCES)} texts, labels match the host; "
          f"process {wall:.1f} s, emulated inference ms {latencies}")  # fmt: skip


@pytest.mark.emulator
def test_cpp_tokenizer_on_emulated_pi4_matches_host(bundle: Path, device_cpp: Path, tmp_path: Path) -> None:
    """The aarch64 build on the whole set: catches ARM-only differences (plain char is unsigned there)."""
    cases = tokenizer_cases()
    (tmp_path / "cases.json").write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
    result, wall = run_emulated([str(device_cpp / "xlnet_tokenize"), str(bundle / "tokenizer.json"),
                                 str(tmp_path / "cases.json")], emulate._guest_env())  # fmt: skip
    assert result.returncode == 0, result.stderr
    spec = json.loads((bundle / "tokenizer.json").read_text())
    encoder = bundle_encoder(bundle)
    wrong = mismatches(parse_tokenize_output(result.stdout), host_encodings(encoder, spec["sequence_length"]))
    print(f"\nC++ tokenizer (aarch64 on emulated {PI4.qemu_cpu}, bundle vocab) vs host: {group_counts(wrong)}, "
          f"{wall:.1f} s")  # fmt: skip
    assert wrong == [], [repr(cases[i])[:60] for i in wrong[:5]]


@pytest.mark.emulator
@pytest.mark.parametrize("profile", ["raspberry-pi-4", "android-arm64"])
def test_self_tests_on_emulated_cpu(profile: str, emulator: None, bundle: Path, device_cpp: Path,
                                    tmp_path: Path) -> None:
    """The Python app (guest python3 + ai-edge-litert) and the aarch64 C++ app replay selftest.json on the emulated
    CPU of the profile (Cortex-A72, Cortex-A76): PASS against the host's expected outputs; a tampered expectation
    FAILs there too (exit 1)."""
    device = load_profile(profile).device
    site, _ = emulate.RUNTIME_SITES["ai-edge-litert"]
    python3 = emulate.device_root(device) / "usr" / "bin" / "python3"
    programs = {
        "python": ([str(python3), str(APP_DIR / "classify.py"), "--self-test", str(bundle)], emulate._guest_env(site)),
        "cpp": ([str(device_cpp / "classify_pte"), "--self-test", str(bundle)], emulate._guest_env()),
    }
    for app, (program, env) in programs.items():
        result, wall = run_emulated(program, env, device)
        assert result.returncode == 0, (app, result.stdout, result.stderr[-3000:])
        assert result.stdout.rstrip().endswith("self-test: PASS") and "tolerance 0.0001? yes" in result.stdout
        print(f"\n{app} self-test on emulated {device.qemu_cpu} ({wall:.1f} s):\n{result.stdout}")
    copy = rewrite_selftest(bundle, tmp_path, shift_expected_logits)
    result, _ = run_emulated([str(device_cpp / "classify_pte"), "--self-test", str(copy)], emulate._guest_env(), device)
    assert result.returncode == 1 and result.stdout.rstrip().endswith("self-test: FAIL"), result.stdout
