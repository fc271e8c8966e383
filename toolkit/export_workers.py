"""Artifacts exported side by side, each in its own worker process.

Why: exporting is single-threaded Python (torch.export, ExecuTorch's edge passes and XNNPACK partitioning, the LiteRT
converter), so on a 2-core machine two artifacts exported at once take about as long as the slower one. Workers are
fresh interpreters (``spawn``: no forked OpenMP or converter state) that load the distilled student from its folder,
so every artifact is exported from the same saved weights as the in-process path. Results come back in the
profile's order; the caller checks each one while the others are still exporting.

``XLNET_EDGE_EXPORT_WORKERS`` sets how many artifacts are exported at once (default: 2 where there are 2 or more
cores; 1 exports in this process, e.g. on a machine short of memory: each worker holds its own copy of the
libraries, ~1 GB).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from toolkit.errors import raise_if_interrupted
from toolkit.manifest import ArtifactRecord
from toolkit.profiles import Artifact
from toolkit.registry import get_backend


DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))


def export_workers() -> int:
    """How many artifacts to export at once (``XLNET_EDGE_EXPORT_WORKERS``, else ``DEFAULT_WORKERS``)."""
    setting = os.environ.get("XLNET_EDGE_EXPORT_WORKERS", "").strip()
    if setting.isdigit() and int(setting) >= 1:
        return int(setting)
    return DEFAULT_WORKERS


def export_artifact(student, artifact: Artifact, path: Path, calibration, bundle: Path, lengths) -> ArtifactRecord:
    """Write one artifact (not yet valid; one method per length bucket) and its record; the format's backend does
    the work."""
    details = get_backend(artifact.format).export(student, artifact, path, calibration, lengths)
    return ArtifactRecord.for_file(artifact, path, bundle, student.config, details, lengths)


@dataclass(frozen=True)
class ExportJob:
    artifact: Artifact
    path: Path  # where the unchecked file is written


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # the workers share the cores: calibration runs must not oversubscribe them


def _export_from_folder(student_dir: str, artifact: Artifact, path: str, calibration, bundle: str,
                        lengths) -> ArtifactRecord:
    from toolkit.student import load_student

    return export_artifact(load_student(Path(student_dir)), artifact, Path(path), calibration, Path(bundle), lengths)


def export_in_order(jobs: Sequence[ExportJob], student, student_dir: Path, calibration, bundle: Path,
                    lengths: Sequence[int] | None, workers: int | None = None
                    ) -> Iterator[tuple[ExportJob, ArtifactRecord]]:
    """Export every job; yield ``(job, record)`` in the jobs' order as soon as each (and those before it) is done.

    With one worker (or one job) everything runs in this process on ``student``; otherwise the workers load the
    student saved in ``student_dir``. A failure or Ctrl-C stops the other exports at once.
    """
    workers = min(export_workers() if workers is None else workers, len(jobs))
    if workers <= 1:
        for job in jobs:
            raise_if_interrupted()
            yield job, export_artifact(student, job.artifact, job.path, calibration, bundle, lengths)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads,))
    futures: list[Future] = []
    finished = False
    try:
        futures = [pool.submit(_export_from_folder, str(student_dir), job.artifact, str(job.path), calibration,
                               str(bundle), None if lengths is None else list(lengths)) for job in jobs]
        for job, future in zip(jobs, futures):
            record = future.result()
            raise_if_interrupted()
            yield job, record
        finished = True
    finally:
        if not finished:  # an error, Ctrl-C or the caller stopped early: nothing else is worth finishing
            for future in futures:
                future.cancel()
            _terminate(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's running exports now (``shutdown`` alone waits for them)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
