"""What a user reads stands on its own: the README, docs/, notebooks, examples and every command's
--help cite no document the user does not have (the project's internal product rules, "SPEC")."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from pricing_lab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
_SPEC = re.compile(r"\bSPEC\b")


def _help_texts(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, str]]:
    for command, sub in _parsers(parser, name):
        yield command, sub.format_help()


def test_no_reader_facing_text_cites_the_spec() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*")]
    files += [*(ROOT / "notebooks").glob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]
    files += [ROOT / "notebooks" / "README.md"]
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if path.is_file()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SPEC.search(line)
    ]
    cited += [
        name for name, text in _help_texts(build_parser(), "pricing-lab") if _SPEC.search(text)
    ]
    assert cited == []


def test_every_option_of_every_command_says_what_it_does() -> None:
    silent = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in _parsers(build_parser(), "pricing-lab")
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert silent == []


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {command}")
