"""The lab's clock (snippets/clock.yml): every wait has a figure, every figure a source."""

from __future__ import annotations

import re

from tools import lab_clock
from tools.make_notebooks import snippet_files

CODE = re.compile(r"^::: \{\.cell \.code[^\n]*\n```\w+\n(.*?)^```", re.M | re.S)


def code_cells() -> list[tuple[str, str]]:
    """(snippet name, source) of every code cell of the lab."""
    return [(path.name, m.group(1)) for path in snippet_files()
            for m in CODE.finditer(path.read_text())]


def test_every_cell_that_watches_a_workflow_has_a_figure() -> None:
    missing = [(name, src.splitlines()[0]) for name, src in code_cells()
               if "watch_workflow.py" in src and not lab_clock.marks(src)]
    assert missing == []


def test_every_mark_names_a_wait_and_every_wait_is_made_of_known_parts() -> None:
    clock = lab_clock.load()
    used = {w for _, src in code_cells() for w in lab_clock.marks(src)}
    assert used <= set(clock["waits"]), used - set(clock["waits"])
    for name, wait in clock["waits"].items():
        assert wait["parts"] and set(wait["parts"]) <= set(clock["parts"]), name
    for name, part in clock["parts"].items():
        assert part["basis"] in {"measured", "estimate"} and part["source"], name


def test_a_mark_becomes_the_figure_of_its_parts() -> None:
    clock = lab_clock.load()
    line = lab_clock.describe(clock, "live-users")
    assert f"about {lab_clock.minutes(clock, 'live-users'):g} min" in line
    assert "measured" in line and "estimated for Chameleon" in line
