"""Every command the README and docs/ show still runs: its subcommand, its flags and the suites it names exist."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from bench.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.toml"))]
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
FLAG = re.compile(r"^\[?(--[a-z][a-z0-9-]*)")


def commands(text: str) -> list[str]:
    """`python -m bench...` commands: lines of fenced blocks, and inline code spans (which may wrap lines)."""
    found = [line for block in FENCE.findall(text) for line in block.splitlines()]
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCE.sub("", text))]
    out = []
    for line in found:
        start = line.find("python -m bench")
        if start >= 0:
            command = line[start:].split(" #")[0].split(" && ")[0].replace("\\|", "|")
            out.append(command.strip())
    return out


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def check(command: str) -> list[str]:
    """What in `command` does not exist: its module or subcommand, a flag, a suite."""
    tokens = command.split()
    module, rest = tokens[2], tokens[3:]
    if module == "bench" and not rest:
        return []  # the command line named as a whole
    flags = [m.group(1) for token in rest if (m := FLAG.match(token))]
    if module == "bench":
        parsers = subcommands()
        name = next((t for t in rest if not t.startswith(("-", "["))), None)
        if name not in parsers:
            return [f"no subcommand {name!r}"]
        known = set(parsers[name]._option_string_actions)
        problems = [f"{name}: no option {flag}" for flag in flags if flag not in known]
    else:
        spec = importlib.util.find_spec(module)
        if spec is None or not module.startswith("bench.benchmarks."):
            return [f"no module {module}"]
        source = Path(spec.origin).read_text()
        problems = [f"{module}: no option {flag}" for flag in flags if f'"{flag}"' not in source]
    for position, token in enumerate(rest[:-1]):
        if token.strip("[") == "--suite":
            for suite in rest[position + 1].strip("[]`").split("|"):
                named = ROOT / "bench" / "suites" / f"{suite}.toml"
                if not suite.isupper() and suite not in ("S", "FILE.toml") and not (named.exists() or (ROOT / suite)
                                                                                    .exists()):
                    problems.append(f"no suite {suite!r}")
    return problems


def test_the_pages_show_commands():
    found = {page.name: commands(page.read_text()) for page in PAGES}
    assert len(found["README.md"]) >= 8 and sum(map(len, found.values())) >= 30


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_on_the_page_matches_the_command_line(page):
    problems = {command: check(command) for command in commands(page.read_text())}
    assert not {c: p for c, p in problems.items() if p}


def test_the_check_catches_a_drifted_command():
    assert check("python -m bench run --suite full --no-such-flag") == ["run: no option --no-such-flag"]
    assert check("python -m bench runs --suite full") == ["no subcommand 'runs'"]
    assert check("python -m bench run --suite nonesuch") == ["no suite 'nonesuch'"]
    assert check("python -m bench.benchmarks.extraction --filez 3") == [
        "bench.benchmarks.extraction: no option --filez"]
    assert check("python -m bench.benchmarks.nothing") == ["no module bench.benchmarks.nothing"]
