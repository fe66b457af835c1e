"""Generate the numbered notebooks in notebooks/ from the lab source in snippets/.

Each snippets/N_name.md is pandoc notebook markdown (``::: {.cell .markdown}`` and
``::: {.cell .code tags="..."}`` divs) with a ``jupyter: kernelspec:`` front matter.
The output is deterministic: cell ids come from the notebook name and position, tags
are lists, images are plain relative links to notebooks/images/.

    python tools/make_notebooks.py          # write notebooks/
    python tools/make_notebooks.py --check  # exit 1 if notebooks/ is out of date
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

import nbformat
import pypandoc

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import lab_clock  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SNIPPETS = REPO / "snippets"
NOTEBOOKS = REPO / "notebooks"
CLOCK_PAGE = REPO / "book" / "clock.md"
IMAGES = "images"

LANGUAGES = {"bash": "bash", "python3": "python"}


def snippet_files(snippets: Path = SNIPPETS) -> list[Path]:
    """Return the lab's snippet files in chapter order (by their leading number)."""
    files = [p for p in snippets.glob("*.md") if p.stem.split("_", 1)[0].isdigit()]
    return sorted(files, key=lambda p: int(p.stem.split("_", 1)[0]))


def convert(snippet: Path, clock: dict) -> tuple[nbformat.NotebookNode, lab_clock.Total]:
    """One snippet as a validated, deterministic notebook with its clock stamped; its time."""
    raw = pypandoc.convert_file(
        str(snippet),
        "ipynb",
        format="markdown-implicit_figures",
        extra_args=[f"--resource-path={snippet.parent}", "--wrap=preserve"],
    )
    nb = nbformat.reads(raw, as_version=4)
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel not in LANGUAGES:
        raise ValueError(f"{snippet}: set jupyter.kernelspec.name to bash or python3")
    nb.metadata = {
        "kernelspec": dict(nb.metadata["kernelspec"]),
        "language_info": {"name": LANGUAGES[kernel]},
    }
    for index, cell in enumerate(nb.cells):
        cell.id = f"{snippet.stem.replace('_', '-')}-{index:03d}"
        cell.pop("attachments", None)
        cell.source = cell.source.replace("attachment:", "")
        if cell.cell_type == "code":
            tags = cell.metadata.get("tags", "")
            if isinstance(tags, str):
                tags = [t.strip() for t in tags.split(",") if t.strip()]
            cell.metadata["tags"] = tags
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or not first.source.startswith("# "):
        raise ValueError(f"{snippet}: the first cell must be markdown starting with an H1 title")
    total = lab_clock.stamp(nb.cells, clock)
    nbformat.validate(nb)
    return nb, total


def render(nb: nbformat.NotebookNode) -> str:
    """Serialise a notebook the same way every time."""
    return nbformat.writes(nb, version=4) + "\n"


def build(out: Path, snippets: Path = SNIPPETS, page: Path | None = None) -> list[Path]:
    """Write the notebooks and images into out/ and the clock page (default out/clock.md)."""
    out.mkdir(parents=True, exist_ok=True)
    clock = lab_clock.load(snippets / "clock.yml")
    written, totals = [], {}
    for snippet in snippet_files(snippets):
        target = out / f"{snippet.stem}.ipynb"
        nb, totals[snippet.stem] = convert(snippet, clock)
        target.write_text(render(nb), encoding="utf-8")
        written.append(target)
    source_images = snippets / IMAGES
    if source_images.is_dir():
        shutil.copytree(source_images, out / IMAGES, dirs_exist_ok=True)
    (page or out / "clock.md").write_text(lab_clock.page(totals, clock), encoding="utf-8")
    return written


def differences(out: Path, fresh: Path) -> list[str]:
    """Name the files that differ between the committed out/ and a fresh build."""
    diff = []
    for new in sorted(fresh.rglob("*")):
        if new.is_file():
            old = out / new.relative_to(fresh)
            if not old.exists() or not filecmp.cmp(old, new, shallow=False):
                diff.append(str(old.relative_to(REPO)))
    for old in sorted(out.glob("*.ipynb")):
        if not (fresh / old.name).exists():
            diff.append(f"{old.relative_to(REPO)} (no snippet)")
    return diff


def main(argv: list[str] | None = None) -> int:
    """Build notebooks/, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if notebooks/ is stale")
    args = parser.parse_args(argv)
    if not args.check:
        for path in build(NOTEBOOKS, page=CLOCK_PAGE):
            print(f"wrote {path.relative_to(REPO)}")
        print(f"wrote {CLOCK_PAGE.relative_to(REPO)}")
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as pages:
        build(Path(tmp), page=Path(pages) / "clock.md")
        stale = differences(NOTEBOOKS, Path(tmp))
        if (Path(pages) / "clock.md").read_text() != CLOCK_PAGE.read_text():
            stale.append(str(CLOCK_PAGE.relative_to(REPO)))
    for name in stale:
        print(f"out of date: {name}", file=sys.stderr)
    if stale:
        print("run `make notebooks` and commit the result", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
