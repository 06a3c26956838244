"""The `hpo` command's entry point: a Ctrl-C while the command line's libraries are still being
imported (about a second) ends it like one at any later moment, one line and exit 130, not a
traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point: import the command line, then run it."""
    try:
        from hpo.cli import main as run_command_line
    except KeyboardInterrupt:
        sys.stderr.write("hpo: interrupted\n")
        raise SystemExit(130) from None
    run_command_line()
