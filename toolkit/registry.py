"""Where formats and quantization recipes plug in: two registries, filled by the backend modules themselves.

A **backend** is one artifact format (``.pte``, ``.tflite``): how to export the student to it, how to run it on the
host with the runtime the device ships, and how to run it on the emulated device. A **recipe** is one way a backend
quantizes: its implementation, plus the facts the other stages decide from (float or integer arithmetic, whether it
is numerically the fp32 model, whether it calibrates on training samples). Both register where they are written::

    @register_recipe("pte", "int8-dynamic", compute="int8")
    def _prepare_int8_dynamic(module, example, calibration): ...

    @register_backend
    class ExecuTorchBackend(Backend): format = "pte"; ...

and every other stage looks them up (:func:`get_recipe`, :func:`get_backend`) instead of testing names. The backend
modules are imported on the first lookup (their heavy libraries load lazily, inside their functions).
Runtime and delegate rules (what a runtime cannot run, what a delegate requires) are data: ``targets/rules/runtimes-delegates.yaml``,
read by :mod:`toolkit.rules`. How to add a recipe, runtime, delegate or format: ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np

# The modules that define backends and recipes; importing one registers what it defines.
BACKEND_MODULES = ("toolkit.export_pte", "toolkit.export_tflite")

Compute = Literal["float", "int8"]


@dataclass(frozen=True)
class Recipe:
    """A registered quantization recipe of one format."""

    format: str
    name: str
    build: Callable[..., Any]  # the backend's implementation (its signature is the backend's business)
    compute: Compute  # "float": float arithmetic (weights may be stored smaller); "int8": integer kernels
    exact: bool = False  # numerically the fp32 model: held to fp32_max_abs_logit_diff against the eager student
    calibrates: bool = False  # needs real training samples for activation ranges
    summary: str = ""
    # Trains the module once on the calibration samples before any method is built (quantization-aware training):
    # ``trains(module, example, calibration) -> module``; None for post-training recipes.
    trains: Callable[..., Any] | None = None
    # Recipes of the same format to try when this one fails its tolerances (named in the advice), best first.
    alternatives: tuple[str, ...] = ()

    @property
    def is_float(self) -> bool:
        return self.compute == "float"


class Backend:
    """One artifact format. Subclasses set the class attributes and implement the methods."""

    format: ClassVar[str]  # the profile's ``format:`` value
    suffix: ClassVar[str]  # the file name's suffix
    runtimes: ClassVar[tuple[str, ...]]  # runtimes that run this format (the first is the default)

    def export(self, student, artifact, path: Path, calibration: list[np.ndarray] | None,
               lengths: list[int] | None) -> dict:
        """Write the artifact to ``path`` (atomically), one method per length in ``lengths`` (toolkit/buckets.py);
        return the details the manifest records for it."""
        raise NotImplementedError

    def prepare_host(self, runtime: str) -> None:
        """Build what running ``runtime`` on the host needs, once per machine (default: nothing)."""

    def run_on_host(self, path: Path, inputs: list[np.ndarray], runtime: str, method: str | None = None) -> np.ndarray:
        """Logits [N, C] of ``method`` (default: the only one) from the artifact's runtime on the host (Python
        bindings): the host check."""
        raise NotImplementedError

    def run_host_build(self, path: Path, inputs: list[np.ndarray], runtime: str, method: str | None = None):
        """Logits from the host build of exactly what the emulated device runs (the emulator check's reference)."""
        return self.run_on_host(path, inputs, runtime, method)

    def run_emulated(self, device, artifact: dict, path: Path, inputs: list[np.ndarray], method: str | None = None,
                     **options):
        """An ``EmulatedRun`` of the artifact's ``method`` on the profile's emulated CPU (toolkit/emulate.py)."""
        raise NotImplementedError


_RECIPES: dict[tuple[str, str], Recipe] = {}
_BACKENDS: dict[str, Backend] = {}
_loaded = False


def register_recipe(format: str, name: str, *, compute: Compute, exact: bool = False, calibrates: bool = False,
                    trains: Callable[..., Any] | None = None, alternatives: tuple[str, ...] = ()):
    """Decorator: register ``build`` as recipe ``name`` of ``format`` (its docstring's first line is its summary)."""

    def decorator(build: Callable) -> Callable:
        if (format, name) in _RECIPES:
            raise ValueError(f"recipe '{name}' of format '{format}' is registered twice")
        summary = (inspect.getdoc(build) or "").split("\n")[0]
        _RECIPES[(format, name)] = Recipe(format, name, build, compute, exact, calibrates, summary, trains,
                                          alternatives)
        return build

    return decorator


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: register one instance of a :class:`Backend` under its ``format``."""
    if cls.format in _BACKENDS:
        raise ValueError(f"format '{cls.format}' has two backends")
    _BACKENDS[cls.format] = cls()
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BACKEND_MODULES:
            importlib.import_module(module)


def formats() -> list[str]:
    _load()
    return list(_BACKENDS)


def get_backend(format: str) -> Backend:
    _load()
    if format not in _BACKENDS:
        raise KeyError(f"no backend for format '{format}'; registered: {list(_BACKENDS)}")
    return _BACKENDS[format]


def recipe_names(format: str) -> list[str]:
    _load()
    return [name for (fmt, name) in _RECIPES if fmt == format]


def get_recipe(format: str, name: str) -> Recipe:
    _load()
    if (format, name) not in _RECIPES:
        raise KeyError(f"'{name}' is not a {format} recipe; choose one of {recipe_names(format)}")
    return _RECIPES[(format, name)]
