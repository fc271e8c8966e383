"""The seams of docs/architecture.md hold: registries, rules as data, no import cycles, no name tests in the stages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from toolkit import registry, rules
from toolkit.profiles import list_profiles
from toolkit.registry import formats, get_backend, get_recipe, recipe_names, register_recipe

TOOLKIT = Path(registry.__file__).resolve().parent


def toolkit_import_graph() -> dict[str, set[str]]:
    """toolkit module -> the toolkit modules it imports, counting imports inside functions (lazy imports hide
    cycles from the interpreter, not from this check)."""
    modules = {".".join(p.relative_to(TOOLKIT.parent).with_suffix("").parts): p for p in TOOLKIT.rglob("*.py")}
    modules = {name.removesuffix(".__init__"): path for name, path in modules.items()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toolkit"):
                graph[name] |= {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                graph[name] |= {node.module} & modules.keys()
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names} & modules.keys()
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = toolkit_import_graph()
    assert "toolkit.export_tflite" not in graph["toolkit.nnapi"], "nnapi reads flatbuffers via toolkit.tflite_graph"
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_shipped_artifact_has_a_backend_and_a_registered_recipe():
    for profile in list_profiles():
        for artifact in profile.artifacts:
            backend = get_backend(artifact.format)
            assert artifact.runtime in backend.runtimes
            assert get_recipe(artifact.format, artifact.recipe).name == artifact.recipe
            assert rules.artifact_problems(artifact.format, artifact.recipe, artifact.runtime, artifact.delegate) == []


def test_recipe_facts_the_stages_decide_from():
    assert set(formats()) == {"pte", "tflite"}
    assert {(f, n) for f in formats() for n in recipe_names(f) if get_recipe(f, n).exact} == {
        ("pte", "fp32"), ("tflite", "fp32")}
    assert {n for f in formats() for n in recipe_names(f) if get_recipe(f, n).calibrates} == {
        "int8-static", "int8-static-histogram", "int8-static-qat", "int8-static-embedding", "full-int8"}
    float_compute = {n for n in recipe_names("tflite") if get_recipe("tflite", n).is_float}
    assert float_compute == {"fp32", "fp16-weights", "weight-only-int8"}
    assert {"8da4w"} <= set(recipe_names("pte")) and {"dynamic-int4"} <= set(recipe_names("tflite"))
    assert all(get_recipe(f, n).summary for f in formats() for n in recipe_names(f)), "each recipe says what it is"
    assert all(set(get_recipe(f, n).alternatives) <= set(recipe_names(f)) - {n} for f in formats()
               for n in recipe_names(f)), "a recipe's alternatives are other recipes of its format"


def test_a_recipe_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        register_recipe("pte", "fp32", compute="float")(lambda *a: None)
    with pytest.raises(KeyError, match="choose one of"):
        get_recipe("pte", "int3-magic")


def test_runtime_and_delegate_rules_come_from_the_data_file():
    assert any("silently wrong" in p for p in rules.artifact_problems("tflite", "dynamic-int8", "tflite-runtime", "cpu"))
    assert rules.artifact_problems("tflite", "weight-only-int8", "tflite-runtime", "cpu") == []
    assert any("full-int8" in p for p in rules.artifact_problems("tflite", "fp32", "ai-edge-litert", "nnapi"))
    assert any("runs on executorch" in p for p in rules.artifact_problems("pte", "fp32", "tflite-runtime", "xnnpack"))
    problems = rules.student_problems("nnapi", ["gelu"], ["layernorm"], "attention_mask")
    assert problems and "['gelu', 'layernorm']" in problems[0] and "student.activations: [relu]" in problems[0]
    assert rules.student_problems("nnapi", ["relu"], ["l2norm"], "additive_bias") == []
    assert rules.student_problems("xnnpack", ["gelu"], ["layernorm"], "attention_mask") == []
    assert rules.emulated_delegate("nnapi") == "xnnpack" and rules.emulated_delegate("cpu") == "cpu"
    assert rules.not_validated({"nnapi"}) and "NOT executed" in rules.not_validated({"nnapi", "xnnpack"})[0]
    assert rules.not_validated({"xnnpack", "cpu"}) == []


# The stages decide from the registries and rules; only backends and the rules module know the names.
STAGE_MODULES = ("pipeline", "validate", "selftest", "checks", "evaluate", "report", "tables", "distill")
NAME_TEST = re.compile(
    r"""(format|recipe|runtime|delegate)["']?\]?\s*(==|!=|in)\s*[("'{]|\.startswith\(["'](int8|fp|dynamic|full)""")


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_stages_do_not_test_format_recipe_runtime_or_delegate_names(module):
    source = (TOOLKIT / f"{module}.py").read_text()
    hits = [line.strip() for line in source.splitlines() if NAME_TEST.search(line)]
    assert hits == []


def test_the_name_test_pattern_catches_what_it_should():
    for line in ('if artifact.format == "pte":', 'if record["format"] == "pte":', 'x = recipe in ("fp32",)',
                 'if recipe.startswith("int8-dynamic"):'):
        assert NAME_TEST.search(line), line
