"""Count the student prose of the lab: words in the notebooks' markdown cells.

Fenced code blocks inside markdown cells are not prose and are not counted; inline code
spans are (they are read as part of a sentence). ``make words`` prints the table.

    python tools/word_count.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
# The lab must fit one sitting (issue 15): the student prose of all notebooks together.
MAX_WORDS = 12_000
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose_words(text: str) -> int:
    """Number of words in one markdown cell, without its fenced code blocks."""
    return len(FENCE.sub("", text).split())


def notebook_words(path: Path) -> int:
    """Words of prose in one notebook."""
    nb = nbformat.read(path, as_version=4)
    return sum(prose_words(c.source) for c in nb.cells if c.cell_type == "markdown")


def counts(notebooks: Path = NOTEBOOKS) -> dict[str, int]:
    """Words of prose per notebook, in chapter order."""
    paths = sorted(notebooks.glob("*.ipynb"), key=lambda p: int(p.stem.split("_", 1)[0]))
    return {p.stem: notebook_words(p) for p in paths}


def main() -> int:
    """Print the words per notebook and the total against the limit."""
    table = counts()
    for name, words in table.items():
        print(f"{name:28s} {words:6,d}")
    total = sum(table.values())
    print(f"{'total':28s} {total:6,d}   (at most {MAX_WORDS:,d})")
    return 0 if total <= MAX_WORDS else 1


if __name__ == "__main__":
    sys.exit(main())
