"""A quiet console: the toolkit's own lines, progress bars and errors on the terminal; everything else in a log file.

The libraries an export drives print a lot that a user cannot act on: torch ``FutureWarning``s and ``W... _pytree.py``
lines, torchao's "Failed to load ..._C_mxfp8...so", the LiteRT converter's ``[START]/[ DONE]`` steps and
``flatbuffer_export.cc`` lines, absl/TF/XNNPACK C++ logging, compiler output. :func:`quiet_output` sends all of it to
one log file whose path is printed once:

* C++ code writes straight to file descriptors 1 and 2, so both are pointed at the log file (``os.dup2``);
* ``sys.stdout`` / ``sys.stderr`` become :class:`_Router` objects: a write made by the toolkit's own code or by a
  tqdm progress bar the toolkit drives goes to the original terminal, any other (``warnings``, ``logging``,
  third-party ``print``, ``rich`` consoles and tqdm bars of other libraries) to the log;
* the toolkit's rich console is pointed at a duplicate of the original stdout.

Errors the user must act on are printed by the toolkit's console and so stay on the terminal; on leaving the block
(normally or by an exception) the descriptors are restored, so a traceback of an unexpected error is shown as usual.
``verbose=True`` (``-v``) changes nothing: everything is shown live. When stdout/stderr are not real files (a test
runner that captures them in memory), nothing is redirected either.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Progress bars update this often (s) when the terminal is not a TTY (CI logs, pipes), unless TQDM_MININTERVAL is set.
PIPED_PROGRESS_INTERVAL_S = "30"


def detail(message: str) -> None:
    """A line worth keeping but not worth the console (a set-up step that went fine): the log file inside
    :func:`quiet_output`, stderr otherwise (and with ``-v``)."""
    stream = sys.stderr._log if isinstance(sys.stderr, _Router) else sys.stderr
    print(message, file=stream, flush=True)


def transient_bar_position() -> int | None:
    """``position`` for a short-lived tqdm bar that may run beside another (nested, or in a second thread): tqdm's
    own stacking on a terminal; 0 when piped, so a CI log gets no cursor-up escapes (each one became a line)."""
    try:
        return None if sys.stderr.isatty() else 0
    except (AttributeError, ValueError):
        return 0


class _Router(io.TextIOBase):
    """A text stream that sends the toolkit's and tqdm's writes to ``terminal`` and everything else to ``log``."""

    def __init__(self, log: io.TextIOBase, terminal: io.TextIOBase) -> None:
        super().__init__()
        self._log = log
        self._terminal = terminal

    def _target(self, depth: int = 2) -> io.TextIOBase:
        """The terminal for the toolkit's own writes and its progress bars (a tqdm bar drawn from toolkit code, or
        by tqdm's monitor thread); the log for everything else, other libraries' bars included."""
        frame = sys._getframe(depth)
        module = _module(frame)
        if module == "toolkit":
            return self._terminal
        if module != "tqdm":
            return self._log
        while frame is not None and _module(frame) == "tqdm":
            frame = frame.f_back
        return self._terminal if frame is None or _module(frame) in ("toolkit", "threading") else self._log

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines) -> None:
        target = self._target()
        for line in lines:
            target.write(line)

    def flush(self) -> None:
        for stream in (self._log, self._terminal):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    def fileno(self) -> int:  # C-level writers (and tqdm's terminal-size query) get the descriptor of their side
        return self._target().fileno()

    def isatty(self) -> bool:
        return self._target().isatty()

    def writable(self) -> bool:
        return True

    @property
    def buffer(self):  # bytes written by other code go where its text goes: the log
        return self._log.buffer

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._terminal, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"


def _module(frame) -> str:
    """The top-level package of the code running in ``frame``."""
    return (frame.f_globals.get("__name__") or "").split(".")[0]


def _real_descriptors() -> bool:
    """True when fds 1 and 2 are what sys.stdout / sys.stderr write to (not an in-memory capture)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _open_log(preferred: Path) -> tuple[int, Path]:
    """The log file's descriptor and path: ``preferred``, or a temporary file when it cannot be written.

    Appended to, each run after a header line: a rerun (a resume after a crash) keeps the earlier run's log.
    """
    try:
        preferred.parent.mkdir(parents=True, exist_ok=True)
        fd, path = os.open(preferred, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), preferred
    except OSError:
        fd, name = tempfile.mkstemp(prefix="toolkit-", suffix=".log")
        path = Path(name)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(fd, f"===== {started} {' '.join(['toolkit', *sys.argv[1:]])} =====\n".encode())
    return fd, path


@contextmanager
def quiet_output(console, log_path: Path | str, verbose: bool = False, announce: bool = True) -> Iterator[Path | None]:
    """Within the block, third-party output goes to ``log_path`` (see the module doc); yields the log's path.

    Yields None (and redirects nothing) when ``verbose`` or when stdout/stderr are not real file descriptors.
    ``announce`` prints the log's path once on the console.
    """
    if verbose or not _real_descriptors():
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd, path = _open_log(Path(log_path))
    saved = os.dup(1), os.dup(2)
    terminal_out = open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    terminal_err = open(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace", closefd=True)
    streams = sys.stdout, sys.stderr
    console_file, soft_wrap = console._file, console.soft_wrap  # rich: None means "sys.stdout at print time"
    tqdm_env = None
    if not terminal_err.isatty() and "TQDM_MININTERVAL" not in os.environ and "tqdm" not in sys.modules:
        tqdm_env = os.environ["TQDM_MININTERVAL"] = PIPED_PROGRESS_INTERVAL_S  # read when tqdm is imported
    try:
        console.file = terminal_out
        console.soft_wrap = not terminal_out.isatty()  # piped: whole lines, never wrapped at 80 columns
        if announce:
            console.print(f"other libraries' output (warnings, converter and compiler logs): {path} "
                          "(-v shows it live)", highlight=False, markup=False)  # fmt: skip
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = _Router(streams[0], terminal_out)
        sys.stderr = _Router(streams[1], terminal_err)
        yield path
    finally:
        for stream in (sys.stdout, sys.stderr, *streams, terminal_out, terminal_err):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log_fd):
            os.close(fd)
        console.file = console_file
        console.soft_wrap = soft_wrap
        terminal_out.close()
        terminal_err.close()
        if tqdm_env is not None and os.environ.get("TQDM_MININTERVAL") == tqdm_env:
            del os.environ["TQDM_MININTERVAL"]
