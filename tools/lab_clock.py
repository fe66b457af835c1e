"""The lab's clock: the time figures of snippets/clock.yml, put into the notebooks and the book.

A code cell that waits starts with `# [clock: NAME]`; `stamp` replaces that line with the
wait's figure and its parts, and writes the notebook's total under its title.

A cell that starts a wait and lets the student go on (`argo submit` without a watch, or a
training whose build follows by itself) says `# [clock: start NAME]`; the later cell that
waits for it says `# [clock: NAME]` and counts only what is left: the wait's minutes less
the student's time in the cells between (reading, running, answering, other waits).
A wait marked `background: true` in clock.yml was started and waited for in an earlier
notebook, and adds nothing.

tools/make_notebooks.py calls `stamp` for every notebook, writes book/clock.md from `page`,
and puts the whole lab's time (`lab_time`) where a markdown cell says LAB_TIME.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CLOCK = REPO / "snippets" / "clock.yml"
MARK = re.compile(r"^# \[clock: (start )?([a-z0-9-]+)\]$", re.M)
QUESTIONS = re.compile(r"^## Questions for the hand-in\n(.*?)(?=^## |\Z)", re.M | re.S)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")  # an image: its alt text is not shown, not read
LIFECYCLE = {"6", "7", "8"}  # the notebooks of the lifecycle, by number
FIRST_SITTING = 6  # the last notebook of the first of two sittings
LAB_TIME = "LAB_TIME"  # in a markdown cell: replaced by `lab_time` of the whole lab
LAB_TIME_WORDS = "about ? hours"  # what LAB_TIME counts as while the totals are made


def load(path: Path = CLOCK) -> dict:
    """The clock table."""
    return yaml.safe_load(path.read_text())


def minutes(clock: dict, wait: str) -> float:
    """A wait's minutes: the sum of its parts."""
    return sum(clock["parts"][p]["minutes"] for p in clock["waits"][wait]["parts"])


def made_of(clock: dict, wait: str) -> str:
    """What a wait's figure is made of: its measured and estimated minutes."""
    parts = [clock["parts"][p] for p in clock["waits"][wait]["parts"]]
    measured = sum(p["minutes"] for p in parts if p["basis"] == "measured")
    estimated = sum(p["minutes"] for p in parts if p["basis"] == "estimate")
    pieces = []
    if measured:
        pieces.append(f"{measured:g} measured")
    if estimated:
        pieces.append(f"{estimated:g} estimated for Chameleon")
    return ", ".join(pieces)


def describe(clock: dict, wait: str, left: float | None = None) -> str:
    """The comment a waiting cell gets: its figure and what it is made of.

    left: for a wait started by an earlier cell, the minutes of it still to wait.
    """
    whole = minutes(clock, wait)
    source = f"({made_of(clock, wait)}; snippets/clock.yml)"
    if clock["waits"][wait].get("background"):
        return f"# Runs in the background; if it is still going, up to {whole:g} min {source}"
    if left is None:
        return f"# Waits about {whole:g} min {source}"
    if left <= 0:
        return (f"# Started above: {whole:g} min {source}, done by now if the cells "
                "between took you as long as the clock says")
    return f"# Waits about {left:.1f} min more: the rest of {whole:g} min started above {source}"


def describe_start(clock: dict, wait: str) -> str:
    """The comment a cell that starts a wait gets."""
    return (f"# Starts a wait of about {minutes(clock, wait):g} min ({made_of(clock, wait)}; "
            "snippets/clock.yml): go on, a later cell waits for what is left")


@dataclass(frozen=True)
class Total:
    """One notebook's time: reading and running cells, answering, and waiting, in minutes.

    alongside: minutes of waits that ran while the student went on (not in the total).
    """

    reading: float
    cells: float
    answers: float
    waiting: float
    alongside: float = 0

    @property
    def minutes(self) -> int:
        """The whole, rounded up to 5 minutes."""
        return 5 * math.ceil((self.reading + self.cells + self.answers + self.waiting) / 5)


def marks(source: str) -> list[str]:
    """The clock names a cell's source asks for (waits and the starts of waits)."""
    return [m.group(2) for m in MARK.finditer(source)]


def starts(source: str) -> list[str]:
    """The waits a cell starts and does not wait for."""
    return [m.group(2) for m in MARK.finditer(source) if m.group(1)]


def waits(source: str) -> list[str]:
    """The waits a cell waits for."""
    return [m.group(2) for m in MARK.finditer(source) if not m.group(1)]


def questions(text: str) -> int:
    """The hand-in questions of a markdown cell."""
    return sum(len(re.findall(r"^\d+\. ", m.group(1), re.M)) for m in QUESTIONS.finditer(text))


def timeline(clock: dict, cells: list[tuple[str, str]]) -> tuple[Total, list[list[float | None]]]:
    """A notebook's total from its (cell type, source) cells, in order, and for each cell the
    minutes left of each wait it waits for (None: a wait no cell before started)."""
    reading = clock["reading"]
    words_per_minute = reading["words_per_minute"]["value"]
    per_cell = reading["minutes_per_cell"]["value"]
    per_question = reading["minutes_per_question"]["value"]
    now = 0.0  # the student's minutes since the notebook's start
    started: dict[str, list[float]] = {}  # wait -> when each unfinished start began
    words = answers = code = waiting = alongside = 0.0
    lefts: list[list[float | None]] = []
    for kind, source in cells:
        cell_left: list[float | None] = []
        if kind == "markdown":
            text = source.replace(LAB_TIME, LAB_TIME_WORDS)
            n_words = len(IMAGE.sub("", FENCE.sub("", text)).split())
            n_questions = questions(text)
            words += n_words
            answers += n_questions * per_question
            now += n_words / words_per_minute + n_questions * per_question
        elif kind == "code":
            code += 1
            now += per_cell
            for wait in waits(source):
                whole = minutes(clock, wait)
                if clock["waits"][wait].get("background"):
                    cell_left.append(None)
                    alongside += whole
                    continue
                if started.get(wait):
                    left = max(0.0, whole - (now - per_cell - started[wait].pop(0)))
                    cell_left.append(left)
                    alongside += whole - left
                else:
                    left = whole
                    cell_left.append(None)
                waiting += left
                now += left
            for wait in starts(source):
                started.setdefault(wait, []).append(now)
        lefts.append(cell_left)
    unfinished = [w for w, times in started.items() if times]
    if unfinished:
        raise ValueError(f"started and never waited for: {unfinished}")
    return Total(reading=words / words_per_minute, cells=code * per_cell, answers=answers,
                 waiting=waiting, alongside=alongside), lefts


def headline(t: Total) -> str:
    """The line under a notebook's title."""
    return (f"**Time: about {t.minutes} minutes** (waiting {t.waiting:.1f}, reading and "
            f"running cells {t.reading + t.cells:.0f}"
            + (f", answers {t.answers:g}" if t.answers else "")
            + "; the figures and how they are made: `snippets/clock.yml`).")


def _stamper(clock: dict, left: Iterator[float | None]) -> Callable[[re.Match], str]:
    """The replacement of one cell's marks, given the minutes left of each wait in turn."""
    def line(m: re.Match) -> str:
        if m.group(1):
            return describe_start(clock, m.group(2))
        return describe(clock, m.group(2), next(left))
    return line


def stamp(cells: list, clock: dict) -> Total:
    """Replace the clock marks of nbformat cells, put the total under the title; return it."""
    t, lefts = timeline(clock, [(c.cell_type, c.source) for c in cells])
    for cell, cell_left in zip(cells, lefts, strict=True):
        if cell.cell_type != "code":
            continue
        cell.source = MARK.sub(_stamper(clock, iter(cell_left)), cell.source)
    title, _, rest = cells[0].source.partition("\n")
    cells[0].source = f"{title}\n\n{headline(t)}\n{rest}" if rest else f"{title}\n\n{headline(t)}"
    return t


def lab_minutes(totals: dict[str, Total]) -> tuple[int, int]:
    """Notebooks 6 to 8 and the whole lab, in minutes: the sums of the notebooks' figures."""
    lifecycle = sum(t.minutes for n, t in totals.items() if n.split("_")[0] in LIFECYCLE)
    return lifecycle, sum(t.minutes for t in totals.values())


def hours(minutes: int) -> str:
    """Minutes as the text says them: hours, rounded up to half an hour."""
    return f"about {math.ceil(minutes / 30) / 2:g} hours"


def lab_time(totals: dict[str, Total]) -> str:
    """The whole lab's time as the text says it (README, notebook 0, the book)."""
    return hours(lab_minutes(totals)[1])


def sittings(totals: dict[str, Total]) -> tuple[int, int]:
    """Two sittings' minutes: notebooks 0 to 6, then 7 to 9 (notebook 6 ends the first)."""
    first = sum(t.minutes for n, t in totals.items() if int(n.split("_")[0]) <= FIRST_SITTING)
    return first, lab_minutes(totals)[1] - first


def page(totals: dict[str, Total], clock: dict) -> str:
    """book/clock.md: every notebook's total and every part, measured or estimated."""
    lines = ["# The lab's clock", "",
             "Generated by `tools/make_notebooks.py` from `snippets/clock.yml`; do not edit.", "",
             "| notebook | waiting | reading and running | answers | total | run alongside |",
             "|---|---|---|---|---|---|"]
    for name, t in totals.items():
        lines.append(f"| {name} | {t.waiting:.1f} | {t.reading + t.cells:.0f} | {t.answers:g} "
                     f"| about {t.minutes} | {t.alongside:.1f} |")
    lifecycle, whole = lab_minutes(totals)
    first, second = sittings(totals)
    lines += ["", f"Notebooks 6 to 8: about {lifecycle} minutes; the whole lab: about {whole} "
              f"minutes ({lab_time(totals)}). In two sittings: notebooks 0 to {FIRST_SITTING}, "
              f"about {first} minutes, then {FIRST_SITTING + 1} to 9, about {second}. Minutes "
              "throughout. *Run alongside*: the minutes of waits that ran while you read, ran "
              "cells or answered, not counted in the total.", "",
              "| part | minutes | basis | source |", "|---|---|---|---|"]
    for name, p in clock["parts"].items():
        lines.append(f"| {name} | {p['minutes']:g} | {p['basis']} | {p['source']} |")
    for name, r in clock["reading"].items():
        lines.append(f"| {name.replace('_', ' ')} | {r['value']:g} | {r['basis']} "
                     f"| {r['source']} |")
    return "\n".join(lines) + "\n"
