"""The one error type the command line reports as a message instead of a traceback.

Every stage raises a subclass of :class:`ToolkitError` for a problem the user can fix (a bad profile, teacher, data
file, output folder, missing tool, ...). Its message says what is wrong, where, and what to do; the CLI prints it
and exits with :data:`EXIT_BAD_INPUT`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
import threading

EXIT_BAD_INPUT = 2  # the input or the environment is wrong; nothing was written that looks valid
EXIT_CHECKS_FAILED = 3  # the bundle was written, but some artifact failed a check (moved to rejected/)
EXIT_INTERRUPTED = 130  # Ctrl-C: rerunning the same command resumes at the last finished stage


class ToolkitError(Exception):
    """A problem with the user's input or environment; the message is the whole report."""


# Ctrl-C, remembered: a C extension that checks for signals while it runs (a runtime, a converter) may swallow the
# KeyboardInterrupt the handler raises; the pipeline checks this flag between steps, so an interrupted run never
# goes on to write a finished bundle.
_interrupted = threading.Event()


def _on_sigint(signum, frame) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def remember_interrupts() -> None:
    """Install the Ctrl-C handler that also sets the flag :func:`raise_if_interrupted` reads (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed, even when the exception it raised was swallowed."""
    if _interrupted.is_set():
        raise KeyboardInterrupt
