"""Render Argo template strings with the real expr engine (the Go checker in tests/exprcheck).

Argo Workflows compiles every `{{= ... }}` tag with the expr engine when it runs a step;
nothing checks them at `argo submit`. tests/exprcheck/main.go mirrors argo-workflows v4's
util/template (replace.go Replace, template.go (impl).replace, kind.go parseTag,
expression_template.go expressionReplaceCore, simple_template.go simpleReplaceStrict) and
util/expr/env GetFuncMap; its header comment lists what it does and where it differs.
This module builds it once per source version under build/exprcheck/ and calls it.
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
SETUP = ("run tools/install_system_packages.sh (`make setup`): it installs golang-go and "
         "golang-github-antonmedv-expr-dev, which the expression checks build on")


class CheckerUnavailable(RuntimeError):
    """Go or the expr library is missing, so the checker cannot be built."""


@dataclass(frozen=True)
class Rendered:
    """One string after Argo's substitution: its value, each expression's result, or an error."""

    value: str
    expressions: tuple[tuple[str, str], ...]
    error: str


@functools.cache
def checker() -> Path:
    """The built checker binary, built now if this version of main.go has none yet."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    binary = REPO / "build" / "exprcheck" / digest / "exprcheck"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise CheckerUnavailable(f"`go` is not on PATH: {SETUP}")
    if not EXPR_LIBRARY.is_dir():
        raise CheckerUnavailable(f"{EXPR_LIBRARY} is missing: {SETUP}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOPATH": str(GOPATH), "GO111MODULE": "off", "GOFLAGS": "",
           "GOCACHE": str(REPO / "build" / "exprcheck" / "gocache")}
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        built = Path(tmp) / "exprcheck"
        result = subprocess.run([go, "build", "-o", str(built), "."], cwd=SOURCE.parent,
                                env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckerUnavailable(f"building tests/exprcheck failed ({SETUP}):\n"
                                     f"{result.stdout}{result.stderr}")
        built.replace(binary)  # atomic: a parallel session sees all of it or nothing
    return binary


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
