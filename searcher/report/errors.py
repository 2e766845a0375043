"""How an error reaches the user: one line, `error: <sentence>`, where a script can tell it from progress."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape


def print_error(console: Console, message: str) -> None:
    """`error: <message>`, on standard error where `console` writes to standard output, so that `2> errors.txt` and a
    job's error log catch it apart from the progress lines; a console writing elsewhere (a notebook's, a test's) keeps it."""
    if console.file is sys.stdout:
        console = Console(stderr=True, soft_wrap=True)
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
