"""Shell tab completion for both `searcher ...` and `python -m searcher ...` (bash; zsh through bashcompinit).

Hydra's own script completes only the command it was installed from, and for
`python -m searcher` it gives up (it looks for a script file after `python`) or, asked
directly, fails to parse `-m searcher`. This script registers one function for
`searcher`, `python` and `python3`, hands the words after the command to Hydra's query
as if typed after `searcher`, and stays out of the way of other Python commands (bash
falls back to file names). Hydra offers `dataset=NAME`, which searcher rejects
(`dataset` is not in the defaults list, so it must be added: `+dataset=NAME`); those
suggestions are dropped, `+dataset=` is offered in their place and completes the names.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

SHELLS = ("bash", "zsh")  # zsh runs the bash script after `autoload -Uz bashcompinit && bashcompinit`
FUNCTION = "_searcher_complete"

INSTALL = r"""_searcher_complete()
{
    local words=($COMP_LINE) helper rest
    if [[ "${words[0]}" == *python* ]]; then
        # another Python command: no suggestions, so bash completes file names as usual
        [[ "${words[1]}" == "-m" && "${words[2]}" == "searcher" ]] || return 0
        helper="${words[0]} -m searcher"
        rest="${COMP_LINE#*-m searcher}"
    else
        helper="${words[0]}"
        rest="${COMP_LINE#"${words[0]}"}"
    fi
    local word=""
    [[ "$COMP_LINE" == *" " ]] || word="${words[${#words[@]}-1]}"
    local choices
    choices=$(COMP_LINE="searcher$rest" $helper -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _searcher_complete searcher python python3
"""

UNINSTALL = f"complete -r searcher python python3 2>/dev/null; unset -f {FUNCTION}\n"


def request(args: list[str]) -> tuple[str, str] | None:
    """("install" | "uninstall" | "query", shell) when the command line asks for shell completion in a shell we handle."""
    if "-sc" not in args and "--shell-completion" not in args:
        return None
    for arg in args:
        action, _, shell = arg.partition("=")
        if action in ("install", "uninstall", "query") and shell in SHELLS:
            return action, shell
    return None  # another shell (fish): Hydra's own completion


def answer(action: str, hydra_query: Callable[[], None]) -> None:
    """Print the script for `install`/`uninstall`; for `query`, Hydra's suggestions less the ones searcher rejects."""
    if action == "install":
        print(INSTALL, end="")
    elif action == "uninstall":
        print(UNINSTALL, end="")
    else:
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            hydra_query()
        print(" ".join(kept(captured.getvalue().split())))


def kept(choices: list[str]) -> list[str]:
    """`dataset=...` (no plus) always fails, as the group is added, not overridden: `+dataset=` takes its place."""
    return ["+dataset=" if choice == "dataset=" else choice for choice in choices if choice == "dataset=" or not choice.startswith("dataset=")]
