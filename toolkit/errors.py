"""The one error type the command line reports as a message instead of a traceback.

Every stage raises a subclass of :class:`ToolkitError` for a problem the user can fix (a bad profile, teacher, data
file, output folder, missing tool, ...). Its message says what is wrong, where, and what to do; the CLI prints it
and exits with :data:`EXIT_BAD_INPUT`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2  # the input or the environment is wrong; nothing was written that looks valid
EXIT_CHECKS_FAILED = 3  # the bundle was written, but some artifact failed a check (moved to rejected/)
EXIT_INTERRUPTED = 130  # Ctrl-C: rerunning the same command resumes at the last finished stage


class ToolkitError(Exception):
    """A problem with the user's input or environment; the message is the whole report."""
