"""Render Argo template strings with the real expr engine (the Go checker in tests/exprcheck).

Argo Workflows compiles every `{{= ... }}` tag with the expr engine when it runs a step;
nothing checks them at `argo submit`. tests/exprcheck/main.go mirrors argo-workflows v4's
util/template (replace.go Replace, template.go (impl).replace, kind.go parseTag,
expression_template.go expressionReplaceCore, simple_template.go simpleReplaceStrict) and
util/expr/env GetFuncMap; its header comment lists what it does and where it differs.
This module builds it once per source version under build/exprcheck/ and calls it; likewise
tests/whencheck (govaluate, the library of Argo's `when` conditions) under build/whencheck/.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "tests" / "exprcheck" / "main.go"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages put their source
EXPR_LIBRARY = GOPATH / "src" / "github.com" / "antonmedv" / "expr"
WHEN_SOURCE = REPO / "tests" / "whencheck" / "main.go"
GOVALUATE_LIBRARY = GOPATH / "src" / "github.com" / "Knetic" / "govaluate"
SETUP = ("run tools/install_system_packages.sh (`make setup`): it installs golang-go, "
         "golang-github-antonmedv-expr-dev and golang-github-knetic-govaluate-dev, which the "
         "expression and condition checks build on")


class CheckerUnavailable(RuntimeError):
    """Go or the expr library is missing, so the checker cannot be built."""


@dataclass(frozen=True)
class Rendered:
    """One string after Argo's substitution: its value, each expression's result, or an error."""

    value: str
    expressions: tuple[tuple[str, str], ...]
    error: str


def _build(source: Path, library: Path) -> Path:
    """The binary of a Go checker, built now if this version of its main.go has none yet."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    folder = REPO / "build" / source.parent.name
    binary = folder / digest / source.parent.name
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise CheckerUnavailable(f"`go` is not on PATH: {SETUP}")
    if not library.is_dir():
        raise CheckerUnavailable(f"{library} is missing: {SETUP}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPATH": str(GOPATH), "GO111MODULE": "off", "GOFLAGS": "",
           "GOCACHE": str(folder / "gocache")}
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        built = Path(tmp) / source.parent.name
        result = subprocess.run([go, "build", "-o", str(built), "."], cwd=source.parent,
                                env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckerUnavailable(f"building tests/{source.parent.name} failed ({SETUP}):\n"
                                     f"{result.stdout}{result.stderr}")
        built.replace(binary)  # atomic: a parallel session sees all of it or nothing
    return binary


@functools.cache
def checker() -> Path:
    """The built expression checker (tests/exprcheck)."""
    return _build(SOURCE, EXPR_LIBRARY)


@functools.cache
def when_checker() -> Path:
    """The built `when` checker (tests/whencheck)."""
    return _build(WHEN_SOURCE, GOVALUATE_LIBRARY)


def should_execute(conditions: list[str]) -> list[tuple[bool, str]]:
    """Each substituted `when` condition decided as Argo's controller does: (run, error)."""
    if not conditions:
        return []
    result = subprocess.run([str(when_checker())], input=json.dumps(conditions),
                            capture_output=True, text=True, check=True)
    return [(a["run"], a.get("error", "")) for a in json.loads(result.stdout)]


def render(requests: list[tuple[str, dict[str, str]]]) -> list[Rendered]:
    """Each text with its flat env ({"inputs.parameters.gpu": "true", ...}) through Argo's rules."""
    if not requests:
        return []
    payload = json.dumps([{"text": text, "env": env} for text, env in requests])
    result = subprocess.run([str(checker())], input=payload, capture_output=True, text=True,
                            check=True)
    return [Rendered(r["value"], tuple((e["expression"], e["result"]) for e in r["expressions"]),
                     r.get("error", ""))
            for r in json.loads(result.stdout)]


def tags(text: str) -> list[str]:
    """The tags of text as fasttemplate splits them: from "{{" to the first "}}" after it."""
    found = []
    while (start := text.find("{{")) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            break  # Argo refuses the template; render() reports it
        found.append(text[start + 2:end])
        text = text[end + 2:]
    return found


def simple_tags(text: str) -> list[str]:
    """The variable names of the tags of text that are not expressions."""
    return [tag.strip() for tag in tags(text) if not tag.startswith("=")]


def has_expression(text: str) -> bool:
    """Whether text has an `{{= ... }}` tag."""
    return any(tag.startswith("=") for tag in tags(text))
