#!/usr/bin/env python3
"""Classify text on a Raspberry Pi with a bundle's .tflite model.

    python3 classify.py --bundle BUNDLE "a gorgeous , witty , seductive movie ." "dull and lifeless"
    echo "one text per line" | python3 classify.py --bundle BUNDLE --json
    python3 classify.py --self-test BUNDLE          # replay the bundle's golden inputs: exit 0 on PASS, 1 on FAIL

Needs only the standard library, numpy and ONE LiteRT runtime: ``pip install ai-edge-litert numpy`` (current) or
``pip install tflite-runtime "numpy<2"`` (the older Raspberry Pi OS runtime). No torch, no transformers.

What it does, per text: tokenize exactly like the host (``xlnet_tokenizer.py`` over the bundle's ``tokenizer.json``),
build the model inputs the manifest declares for the chosen artifact (``input_ids`` int32; ``attention_mask`` int32
OR ``mask_bias`` float32; ``token_type_ids`` int32 for pair tasks), run the interpreter, and print the label, the
softmax scores and the inference latency. One warm-up inference runs at load time, so the printed latencies are
steady-state figures rather than including the interpreter's one-time setup.

Before loading a model it checks the manifest's record of it: the record must say ``valid: true``, its ``file`` must
stay inside the bundle folder (no absolute path, no ``..`` or symlink leading out), and the file's SHA-256 must equal
the record's ``sha256``. The interpreter is then given exactly the bytes that were hashed.

``--self-test BUNDLE`` replays the bundle's ``selftest.json`` (verified against the manifest's ``sha256`` first): each
golden text must tokenize to the golden ids, and each ``.tflite`` model (or ``--model``) must give the expected logits,
computed on the export host with the artifact's runtime, within the tolerance written beside them (float models
1e-4; int8 models a few quantization steps, as the toolkit's emulator check). It prints every figure with the
tolerance used and ``self-test: PASS`` (exit 0) or ``self-test: FAIL`` (exit 1); an unusable bundle exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from xlnet_tokenizer import XLNetTokenizer  # the sibling file: Python puts the script's folder on sys.path

RUNTIMES = ("ai-edge-litert", "tflite-runtime")


class BundleError(RuntimeError):
    """The bundle, the chosen model or the runtime is not usable; the message says what to do."""


def load_interpreter_class(runtime: str = "auto"):
    """(runtime name, Interpreter class) of the requested runtime, or of the first one that imports for ``auto``."""
    wanted = RUNTIMES if runtime == "auto" else (runtime,)
    errors = []
    for name in wanted:
        try:
            if name == "ai-edge-litert":
                from ai_edge_litert.interpreter import Interpreter
            elif name == "tflite-runtime":
                from tflite_runtime.interpreter import Interpreter
            else:
                raise BundleError(f"unknown runtime {name!r}: choose auto, {' or '.join(RUNTIMES)}")
            return name, Interpreter
        except ImportError as err:
            errors.append(f"{name}: {err}")
    raise BundleError("no LiteRT runtime could be imported (" + "; ".join(errors) + "). Install one: "
                      "pip install ai-edge-litert numpy   or   pip install tflite-runtime 'numpy<2'")


class Bundle:
    """The exported bundle folder: manifest.json, labels.json, tokenizer.json and models/."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise BundleError(f"no bundle folder at {self.folder}: pass the folder an export wrote (--bundle DIR)")
        self.manifest = self._read_json("manifest.json")
        self.labels = self._read_json("labels.json")
        if not isinstance(self.labels, list) or not all(isinstance(label, str) for label in self.labels):
            raise BundleError(f"{self.folder / 'labels.json'} must be a JSON list of label names (index = class id)")
        if not (self.folder / "tokenizer.json").is_file():
            raise BundleError(f"{self.folder / 'tokenizer.json'} is missing: re-run the export")
        try:
            self.tokenizer = XLNetTokenizer.load(self.folder / "tokenizer.json")
        except ValueError as err:  # wrong format version
            raise BundleError(str(err)) from None
        self.config = self.manifest.get("student", {}).get("config", {})

    def _read_json(self, name: str):
        path = self.folder / name
        if not path.is_file():
            raise BundleError(f"{path} is missing: {self.folder} is not a complete bundle (re-run the export)")
        return json.loads(path.read_text(encoding="utf-8"))

    def artifact(self, name: str | None, fmt: str = "tflite") -> dict:
        """The manifest record named ``name``, or the first valid artifact of format ``fmt`` when ``name`` is None."""
        records = self.manifest.get("artifacts", [])
        if name is None:
            found = next((r for r in records if r.get("format") == fmt and r.get("valid")), None)
            if found is None:
                raise BundleError(f"the bundle has no valid {fmt} artifact; it has: {describe_artifacts(records)}")
        else:
            found = next((r for r in records if name in (r.get("name"), r.get("file"))), None)
            if found is None:
                raise BundleError(f"no artifact named {name!r} in the bundle; it has: {describe_artifacts(records)}")
        if found.get("valid") is not True:
            raise BundleError(f"{self.folder / 'manifest.json'}: artifact {found.get('name')!r} is marked "
                              f"\"valid\": {json.dumps(found.get('valid'))} (it failed the export's checks; see the "
                              "bundle's report.md); refusing to load it: pick a valid artifact or re-export the bundle")
        if not self.model_path(found).is_file():
            raise BundleError(f"artifact {found['name']} is listed in the manifest but {found['file']} is missing")
        return found

    def model_path(self, artifact: dict) -> Path:
        """BUNDLE/FILE for the artifact's ``file``; refused when it is absolute or leads out of the bundle folder
        (``..`` past the folder, or a symlink resolving outside it)."""
        file = artifact.get("file")
        where = f"{self.folder / 'manifest.json'}: artifact {artifact.get('name')!r} has \"file\": {json.dumps(file)}"
        rule = "refusing to load it (a manifest may only name files inside its bundle)"
        if not isinstance(file, str) or not file:
            raise BundleError(f"{where}, which is not a path inside the bundle; {rule}")
        if file.startswith(("/", "\\")) or Path(file).is_absolute():
            raise BundleError(f"{where}, an absolute path; {rule}")
        depth = 0
        for part in file.split("/"):
            depth += -1 if part == ".." else 0 if part in ("", ".") else 1
            if depth < 0:
                raise BundleError(f"{where}, which leads out of the bundle folder {self.folder}; {rule}")
        # Both resolved the same way (symlinks followed; a part that does not exist kept as it is), then compared.
        # The returned path is the unresolved one: it opens the same file.
        path = self.folder / file
        real = path.resolve()
        if not real.is_relative_to(self.folder.resolve()):
            raise BundleError(f"{where}, which resolves to {real}, outside the bundle folder {self.folder}; {rule}")
        return path

    def read_verified(self, artifact: dict) -> bytes:
        """The artifact's bytes, after checking them against the manifest's ``sha256``."""
        path = self.model_path(artifact)
        expected = artifact.get("sha256")
        if not isinstance(expected, str) or not expected:
            raise BundleError(f"{self.folder / 'manifest.json'}: artifact {artifact.get('name')!r} has no \"sha256\", "
                              f"so {path} cannot be verified; refusing to load it: re-export the bundle")
        content = path.read_bytes()
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected.lower():
            raise BundleError(f"{path}: sha256 {actual} does not match the manifest's {expected}; the file is "
                              "corrupted or was replaced — re-export the bundle")
        return content


def describe_artifacts(records: list[dict]) -> str:
    return ", ".join(f"{r.get('name')} ({r.get('format')}{'' if r.get('valid') else ', NOT valid'})"
                     for r in records) or "none"  # fmt: skip


def model_inputs(specs: list[dict], ids: list[int], mask: list[int], types: list[int], mask_value: float) -> list:
    """One array per manifest input spec, in the manifest's order, batch 1.

    ``mask_bias`` is what the host's ``toolkit.student.model_inputs`` computes: 0 on tokens, -mask_value on padding.
    """
    arrays = []
    for spec in specs:
        name = spec["name"]
        if name == "input_ids":
            values = np.asarray(ids, dtype=np.int32)
        elif name == "attention_mask":
            values = np.asarray(mask, dtype=np.int32)
        elif name == "mask_bias":
            values = ((1.0 - np.asarray(mask, dtype=np.float32)) * -np.float32(mask_value)).astype(np.float32)
        elif name == "token_type_ids":
            values = np.asarray(types, dtype=np.int32)
        else:
            raise BundleError(f"the model wants an input named {name!r}, which this app does not know how to build")
        if values.dtype != np.dtype(spec["dtype"]):
            raise BundleError(f"input {name} is {spec['dtype']} in the manifest; this app builds {values.dtype}")
        arrays.append(values.reshape(spec["shape"]))
    return arrays


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class TfliteClassifier:
    """One .tflite artifact of a bundle, ready to classify texts."""

    def __init__(self, bundle: Bundle, artifact: dict, runtime: str = "auto", threads: int = 1) -> None:
        if artifact["format"] != "tflite":
            raise BundleError(f"{artifact['name']} is a {artifact['format']} model; this app runs .tflite "
                              "(use cpp/classify_pte for .pte)")  # fmt: skip
        self.bundle, self.artifact = bundle, artifact
        # One signature per length bucket (manifest "methods"); a bundle without buckets has one, named by its file.
        methods = artifact.get("methods") or [{"name": None, "sequence_length": artifact["inputs"][0]["shape"][-1],
                                               "inputs": artifact["inputs"]}]
        lengths = [int(m["sequence_length"]) for m in methods]
        if bundle.tokenizer.lengths != sorted(lengths):
            raise BundleError(f"tokenizer.json is for lengths {bundle.tokenizer.lengths} but {artifact['name']} takes "
                              f"{sorted(lengths)} tokens: the bundle mixes files from different exports")  # fmt: skip
        self.mask_value = float(bundle.config.get("mask_value", 30.0))
        content = bundle.read_verified(artifact)  # path and checksum checked before anything loads it
        self.runtime, interpreter_class = load_interpreter_class(runtime)
        path = bundle.model_path(artifact)
        interpreter = interpreter_class(model_content=content, num_threads=threads)  # the bytes that were hashed
        signatures = interpreter.get_signature_list()
        if not signatures:
            raise BundleError(f"{path} has no signature; re-export it with the toolkit")
        self.methods = {}  # length -> (specs, runner, input names, output details)
        for method in methods:
            key = method["name"] or next(iter(signatures))
            if key not in signatures:
                raise BundleError(f"{path} has no signature {key!r} (it has {sorted(signatures)}): the manifest "
                                  "does not describe this model")
            runner = interpreter.get_signature_runner(key)
            names = self._input_names(runner.get_input_details(), method["inputs"])
            output = next(iter(runner.get_output_details().values()))
            self.methods[int(method["sequence_length"])] = (method["inputs"], runner, names, output)
        for length in self.methods:  # warm-up: the first invoke of each signature sets up XNNPACK
            self.logits(self.bundle.tokenizer.encode("", seq_len=length))

    @staticmethod
    def _input_names(details: dict, specs: list[dict]) -> list[str]:
        """The signature's input name for each manifest spec, checked against its dtype and shape.

        litert-torch names inputs ``args_0, args_1, ...`` in the traced (manifest) order; names equal to the
        manifest's are used as they are.
        """
        names = list(details)
        manifest_names = [spec["name"] for spec in specs]
        if len(names) != len(manifest_names):
            raise BundleError(f"the model has inputs {names}, the manifest lists {manifest_names}")
        if sorted(names) == sorted(manifest_names):
            names = manifest_names
        else:
            try:
                names = sorted(names, key=lambda n: int(n.rsplit("_", 1)[-1]))
            except ValueError:
                message = f"cannot match the model's inputs {names} to the manifest's {manifest_names}"
                raise BundleError(message) from None
        for name, spec in zip(names, specs):
            found = (np.dtype(details[name]["dtype"]).name, [int(d) for d in details[name]["shape"]])
            if found != (spec["dtype"], list(spec["shape"])):
                raise BundleError(f"model input {name} is {found}, the manifest says {spec['name']} is "
                                  f"{(spec['dtype'], spec['shape'])}: the manifest does not describe this model")
        return names

    def logits(self, encoded: tuple[list, list, list]) -> np.ndarray:
        """Logits of one encoded text, from the signature of its length (see ``XLNetTokenizer.encode_bucketed``)."""
        if len(encoded[0]) not in self.methods:
            raise BundleError(f"no signature takes {len(encoded[0])} tokens (lengths: {sorted(self.methods)})")
        specs, runner, names, output = self.methods[len(encoded[0])]
        arrays = model_inputs(specs, *encoded, mask_value=self.mask_value)
        result = runner(**dict(zip(names, arrays)))
        logits = next(iter(result.values())).reshape(-1)
        scale, zero_point = output["quantization"]
        if np.issubdtype(logits.dtype, np.integer) and scale:  # an integer output: dequantize it
            logits = (logits.astype(np.float32) - zero_point) * scale
        return logits.astype(np.float32)

    def classify(self, text: str) -> dict:
        started = time.perf_counter()
        encoded = self.bundle.tokenizer.encode_bucketed(text)  # the shortest length bucket that holds the text
        tokenized = time.perf_counter()
        logits = self.logits(encoded)
        finished = time.perf_counter()
        scores = softmax(logits)
        labels = self.bundle.labels
        if len(labels) != len(scores):
            raise BundleError(f"labels.json has {len(labels)} labels but the model gives {len(scores)} scores")
        best = int(np.argmax(scores))
        return {
            "text": text,
            "label": labels[best],
            "label_id": best,
            "scores": {label: float(score) for label, score in zip(labels, scores)},
            "logits": [float(v) for v in logits],
            "tokens": sum(encoded[1]),
            "sequence_length": len(encoded[0]),
            "tokenize_ms": (tokenized - started) * 1000.0,
            "inference_ms": (finished - tokenized) * 1000.0,
        }


def read_selftest(bundle: Bundle) -> dict:
    """BUNDLE/selftest.json after checking it against the manifest's ``selftest`` record (inside, sha256)."""
    entry = bundle.manifest.get("selftest")
    if not isinstance(entry, dict):
        raise BundleError(f"{bundle.folder / 'manifest.json'} lists no \"selftest\" file: the bundle was exported "
                          "without golden inputs (re-export it with a current toolkit)")
    record = {"name": "selftest", "file": entry.get("file"), "sha256": entry.get("sha256")}
    document = json.loads(bundle.read_verified(record).decode("utf-8"))  # path and sha256 checked like a model's
    if document.get("format") != "xlnet-edge-selftest" or document.get("version") != 1:
        raise BundleError(f"{bundle.model_path(record)} is not a version-1 xlnet-edge selftest file")
    return document


def pick_runtime(requested: str, declared: str) -> str:
    """The runtime to replay an artifact with: the one asked for, else the one its expected outputs came from."""
    if requested != "auto":
        return requested
    try:
        load_interpreter_class(declared)
        return declared
    except BundleError:
        return "auto"


def self_test(bundle: Bundle, model: str | None, runtime: str, threads: int) -> bool:
    """Replay selftest.json: golden texts -> ids, then each .tflite model's logits; prints one line per check."""
    doc = read_selftest(bundle)
    examples = doc["examples"]
    print(f"# self-test of {bundle.folder}: {len(examples)} golden texts from selftest.json (sha256 verified)")
    fields = ("input_ids", "attention_mask", "token_type_ids")
    encoded = [bundle.tokenizer.encode_bucketed(e["text"], e.get("pair")) for e in examples]  # length: the bucket
    wrong = [i for i, (e, got) in enumerate(zip(examples, encoded)) if [list(v) for v in got] != [e[f] for f in fields]]
    passed = not wrong
    print(f"tokenizer: {len(examples) - len(wrong)}/{len(examples)} texts give the golden input_ids, attention_mask "
          f"and token_type_ids (exact) -> {'PASS' if passed else 'FAIL'}")
    for i in wrong:
        print(f"  text {i} {examples[i]['text'][:50]!r}: tokenized differently from the export host")
    if model is not None:
        names = [bundle.artifact(model)["name"]]
    else:
        names = [r["name"] for r in bundle.manifest.get("artifacts", [])
                 if r.get("format") == "tflite" and r.get("valid") and r["name"] in doc["artifacts"]]  # fmt: skip
        if not names:
            print("no valid .tflite artifact to replay (the .pte ones: cpp/classify_pte --self-test BUNDLE)")
    for name in names:
        artifact = bundle.artifact(name)
        golden = doc["artifacts"].get(name)
        if golden is None:
            raise BundleError(f"selftest.json has no expected outputs for {name}: re-export the bundle")
        if golden.get("sha256") != artifact.get("sha256"):
            raise BundleError(f"selftest.json's expected outputs for {name} are for another file (sha256 "
                              f"{golden.get('sha256')}, the manifest's is {artifact.get('sha256')}): re-export the bundle")
        classifier = TfliteClassifier(bundle, artifact, pick_runtime(runtime, golden["runtime"]), threads)
        got = np.array([classifier.logits(e) for e in encoded], dtype=np.float64)
        expected = np.array(golden["logits"], dtype=np.float64)
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        same_labels = int((got.argmax(1) == expected.argmax(1)).sum()) if got.shape == expected.shape else 0
        ok = diff <= float(golden["atol"])
        passed = passed and ok
        note = "" if classifier.runtime == golden["runtime"] else f" (expected outputs are from {golden['runtime']})"
        print(f"{name} on {classifier.runtime}{note}: max |logit diff| {diff:.3g} <= tolerance {golden['atol']:.3g}? "
              f"{'yes' if ok else 'NO'}; labels {same_labels}/{len(examples)} as expected -> {'PASS' if ok else 'FAIL'}")
        print(f"  tolerance: {golden['tolerance']}")
    print(f"self-test: {'PASS' if passed else 'FAIL'}")
    return passed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Classify texts with a bundle's .tflite model.")
    parser.add_argument("texts", nargs="*", help="texts to classify; none: read one text per line from stdin")
    parser.add_argument("--bundle", help="the bundle folder (holds manifest.json)")
    parser.add_argument("--self-test", metavar="BUNDLE", dest="self_test",
                        help="replay BUNDLE's golden inputs (selftest.json) and say PASS (exit 0) or FAIL (exit 1)")
    parser.add_argument("--model", help="artifact name or file from the manifest (default: first valid tflite)")
    parser.add_argument("--runtime", default="auto", choices=("auto", *RUNTIMES),
                        help="LiteRT runtime; auto: ai-edge-litert if installed, else tflite-runtime")
    parser.add_argument("--threads", type=int, default=1,
                        help="interpreter threads (default 1: the toolkit's latency budgets are for one core)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text lines")
    args = parser.parse_args(argv)
    if args.bundle is None and args.self_test is None:
        parser.error("the following arguments are required: --bundle (or --self-test BUNDLE)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test is not None:
        try:
            return 0 if self_test(Bundle(args.self_test), args.model, args.runtime, args.threads) else 1
        except BundleError as err:
            print(f"classify.py: error: {err}", file=sys.stderr)
            return 2
    try:
        bundle = Bundle(args.bundle)
        classifier = TfliteClassifier(bundle, bundle.artifact(args.model), args.runtime, args.threads)
        texts = args.texts or [line.rstrip("\r\n") for line in sys.stdin]
        results = [classifier.classify(text) for text in texts]
    except BundleError as err:
        print(f"classify.py: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"model": classifier.artifact["name"], "runtime": classifier.runtime, "results": results},
                         ensure_ascii=False, indent=1))  # fmt: skip
        return 0
    print(f"# {classifier.artifact['name']} on {classifier.runtime}, {args.threads} thread(s)")
    for r in results:
        scores = " ".join(f"{label}={score:.4f}" for label, score in r["scores"].items())
        print(f"{r['label']:<12} {scores}  {r['inference_ms']:.2f} ms  | {r['text'][:60]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
