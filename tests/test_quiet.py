"""The quiet console (toolkit/quiet.py) in a real process: C-level, warnings, logging and third-party prints go to the
log file; the toolkit's console lines, its own stderr lines and tqdm bars stay on the terminal; -v changes nothing;
and the plain tables are complete in 80 columns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from toolkit.files import PROJECT_ROOT
from toolkit.tables import export_summary_lines, plain_table

SCRIPT = textwrap.dedent("""
    import ctypes, logging, os, sys, warnings
    from rich.console import Console
    from toolkit.quiet import quiet_output

    console = Console()
    with quiet_output(console, sys.argv[1], verbose=sys.argv[2] == "1"):
        console.print("[bold]toolkit stage line[/]")
        warnings.warn("library FutureWarning", FutureWarning)
        logging.getLogger("library").warning("library logging line")
        exec("print('library print line')", {"__name__": "library"})
        os.write(2, b"C++ absl line on fd 2\\n")
        libc = ctypes.CDLL(None); libc.puts(b"C stdio line on fd 1"); libc.fflush(None)
        from tqdm import tqdm
        exec("for _ in tqdm(range(3), desc='progress bar'): pass", {"__name__": "toolkit.stage", "tqdm": tqdm})
        exec("print('[emulator] toolkit stderr line', file=sys.stderr)", {"__name__": "toolkit.emulate", "sys": sys})
        from toolkit.quiet import detail
        detail("[runner] set-up detail line")
        exec("for _ in tqdm(range(2), desc='library bar'): pass", {"__name__": "library", "tqdm": tqdm})
    print("after the block")
""")
NOISE = ["library FutureWarning", "library logging line", "library print line", "C++ absl line on fd 2",
         "C stdio line on fd 1", "library bar",
         "[runner] set-up detail line"]  # the toolkit's own set-up details: the log, not the console  # fmt: skip
OURS = ["toolkit stage line", "progress bar", "[emulator] toolkit stderr line", "after the block"]


def run(tmp_path, verbose: bool) -> tuple[str, str]:
    log = tmp_path / "logs" / "toolkit.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), "1" if verbose else "0"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr, log.read_text() if log.is_file() else ""


def test_other_libraries_output_goes_to_the_log(tmp_path):
    console, log = run(tmp_path, verbose=False)
    for line in OURS:
        assert line in console, console
    for line in NOISE:
        assert line in log and line not in console, (line, console, log)
    assert f"{tmp_path / 'logs' / 'toolkit.log'}" in console  # the log's path is printed once
    assert console.count("toolkit.log") == 1


def test_verbose_shows_everything_live(tmp_path):
    console, log = run(tmp_path, verbose=True)
    for line in OURS + NOISE:
        assert line in console, (line, console)
    assert log == ""


def test_plain_tables_are_complete_in_80_columns():
    rows = [["raspberry-pi-4", "Cortex-A72 (cortex-a72)", "pte-int8-dynamic-embedding, pte-fp32, "
             "tflite-weight-only-int8, tflite-fp32"]]  # fmt: skip
    lines = plain_table(["name", "cpu", "artifacts"], rows)
    assert all(len(line) <= 80 for line in lines)
    assert lines[2].startswith("raspberry-pi-4  Cortex-A72 (cortex-a72)")
    text = " ".join(" ".join(lines).split())
    for name in ("pte-int8-dynamic-embedding,", "tflite-weight-only-int8,", "tflite-fp32"):
        assert name in text


def test_export_summary_fits_80_columns():
    import json

    manifest = json.loads((PROJECT_ROOT / "tests" / "data" / "sample_manifest.json").read_text())
    lines = export_summary_lines(manifest)
    assert all(len(line) <= 80 for line in lines), lines
    assert any(line.startswith("tflite-dynamic-int8 ") and line.rstrip().endswith("yes") for line in lines)
    assert any(line.startswith("pte-int8-static ") and line.rstrip().endswith("NO") for line in lines)
