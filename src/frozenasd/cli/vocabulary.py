"""One spelling per concept across the subcommands, the old spellings kept as hidden aliases.

Every subcommand spells a concept the same way: where its outputs go ``-o/--out``, the machine types
``--machine``, the encoder ``--model``, the dataset root ``--data``. Spellings that earlier versions used
in some subcommands (``--output``, ``--machines``, ``--backbone``, ``--dataset``) are still accepted
wherever the concept is, so no script breaks, but no help, usage line or error message shows them.
"""

from __future__ import annotations

import argparse
import textwrap

# primary spelling -> the old spellings that still parse to it
ALIASES: dict[str, tuple[str, ...]] = {
    "--out": ("--output",),
    "--machine": ("--machines",),
    "--model": ("--backbone",),
    "--data": ("--dataset",),
}


class HelpFormatter(argparse.HelpFormatter):
    """Keeps text written with line breaks (examples) as written; wraps the rest between words only.

    argparse's own wrapping also breaks at hyphens, splitting names such as ``framebank-topk``.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return "\n".join(indent + line for line in self._split_lines(text, width - len(indent)))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def examples(*commands: str, before: str = "") -> str:
    """An epilog ending with example commands (``before``: lines to print above them)."""
    lines = [before.rstrip("\n"), ""] if before else []
    lines += ["example:" if len(commands) == 1 else "examples:", *(f"  {c}" for c in commands)]
    return "\n".join(lines) + "\n"


def add_aliases(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` accept each old spelling (:data:`ALIASES`) of the options it has.

    An alias is registered as one more name of the primary option's action rather than as an option
    of its own: it then sets the same value, satisfies ``required``, and appears in no help, usage
    line or error message (argparse lists an action's ``option_strings``, which the alias is not in).
    Call it after every option has been added.
    """
    known = parser._option_string_actions  # argparse's map from every accepted spelling to its action
    for primary, old in ALIASES.items():
        action = known.get(primary)
        if action is None:
            continue
        for spelling in old:
            if spelling in known:
                raise ValueError(f"{spelling} is already an option of {parser.prog}")
            known[spelling] = action
