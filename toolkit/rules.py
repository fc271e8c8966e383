"""Runtime and delegate rules as data (``targets/rules/runtimes-delegates.yaml``), and the checks every stage draws from them.

One place answers "may this artifact be built and run like this?": profile loading (:func:`artifact_problems`),
preflight (:func:`student_problems`, with the student the profile allows) and the manifest's list of what was not
validated (:func:`not_validated`). No other module tests runtime or delegate names.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

RULES_FILE = Path(__file__).resolve().parent.parent / "targets" / "rules" / "runtimes-delegates.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeRule(_Strict):
    format: str
    refuses: dict[str, str] = Field(default_factory=dict, description="recipe -> why it must not ship, what instead")


class StudentRule(_Strict):
    forbidden_ops: list[str] = Field(default_factory=list)
    mask_input: str | None = None
    fix: str = ""


class DelegateRule(_Strict):
    formats: list[str]
    recipes: list[str] | None = None  # None: any recipe of its formats
    recipes_why: str = ""
    emulated_as: str | None = None  # the delegate the emulator runs instead (when this one cannot run there)
    student: StudentRule | None = None
    not_validated: str | None = None


class Rules(_Strict):
    runtimes: dict[str, RuntimeRule]
    delegates: dict[str, DelegateRule]


@lru_cache(maxsize=1)
def rules() -> Rules:
    return Rules.model_validate(yaml.safe_load(RULES_FILE.read_text(encoding="utf-8")))


def artifact_problems(format: str, recipe: str, runtime: str, delegate: str) -> list[str]:
    """Why this format/recipe/runtime/delegate combination cannot ship (empty: it can)."""
    from toolkit.registry import formats, recipe_names

    table = rules()
    if format not in formats():
        return [f"format '{format}': choose one of {formats()}"]
    if recipe not in recipe_names(format):
        return [f"recipe '{recipe}' is not a {format} recipe; choose one of {recipe_names(format)}"]
    runtime_rule, delegate_rule = table.runtimes.get(runtime), table.delegates.get(delegate)
    if runtime_rule is None:
        return [f"runtime '{runtime}': choose one of {list(table.runtimes)}"]
    if delegate_rule is None:
        return [f"delegate '{delegate}': choose one of {list(table.delegates)}"]
    problems = []
    if runtime_rule.format != format:
        runs = [name for name, rule in table.runtimes.items() if rule.format == format]
        problems.append(f"a .{format} artifact runs on {' or '.join(runs)}, not {runtime}")
    if recipe in runtime_rule.refuses:
        problems.append(runtime_rule.refuses[recipe])  # each reason names its runtime
    if format not in delegate_rule.formats:
        problems.append(f"the {delegate} delegate does not run .{format} artifacts")
    if delegate_rule.recipes is not None and recipe not in delegate_rule.recipes:
        why = f" ({delegate_rule.recipes_why})" if delegate_rule.recipes_why else ""
        problems.append(f"the {delegate.upper()} delegate needs recipe {' or '.join(delegate_rule.recipes)}{why}")
    return problems


def student_problems(delegate: str, activations: list[str], normalisations: list[str], mask_input: str) -> list[str]:
    """What the delegate cannot run in the student the profile allows, with the profile change that fixes it."""
    rule = rules().delegates[delegate].student
    if rule is None:
        return []
    unsupported = [op for op in activations + normalisations if op in rule.forbidden_ops]
    if not unsupported and (rule.mask_input is None or mask_input == rule.mask_input):
        return []
    cannot = unsupported or "an in-graph int mask"
    return [f"the {delegate.upper()} delegate cannot run {cannot} in int8; {rule.fix}"]


def emulated_delegate(delegate: str) -> str:
    """The delegate the emulator runs for an artifact of ``delegate`` (itself, unless it cannot run there)."""
    return rules().delegates[delegate].emulated_as or delegate


def not_validated(delegates: set[str]) -> list[str]:
    """The delegates' own statements of what could not be validated here."""
    table = rules().delegates
    return [table[d].not_validated for d in sorted(delegates) if table[d].not_validated]
