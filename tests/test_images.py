"""Every image the book, the snippets and the notebooks show exists and is a valid PNG or SVG."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import yaml
from PIL import Image

from tools.screenshots import MAX_BYTES, OUT, WINDOW

REPO = Path(__file__).resolve().parent.parent
REFERENCE_PAGE = REPO / "book" / "reference.md"

# ![alt](path "title"), <img src="path">, and MyST's ```{image} path / ```{figure} path.
PATTERNS = [
    re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*)?\)"),
    re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE),
    re.compile(r"^[`:]{3,}\s*\{(?:image|figure)\}\s+(\S+)", re.MULTILINE),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def references(text: str) -> list[str]:
    """The image paths a markdown text refers to, in the order of the patterns."""
    return [m.group(1) for pattern in PATTERNS for m in pattern.finditer(text)]


def sources(repo: Path = REPO) -> dict[Path, str]:
    """The markdown of book/*.md, snippets/*.md and the notebooks' markdown cells, by file."""
    texts = {p: p.read_text() for folder in ("book", "snippets")
             for p in (repo / folder).glob("*.md")}
    for path in (repo / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        texts[path] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return texts


def image_problem(path: Path) -> str | None:
    """Why path is not a usable PNG or SVG image, or None when it is one."""
    if not path.is_file():
        return "missing"
    data = path.read_bytes()
    if not data:
        return "empty"
    suffix = path.suffix.lower()
    if suffix == ".svg":
        try:
            root = ET.fromstring(data)
        except ET.ParseError as err:
            return f"not valid XML: {err}"
        return None if root.tag.rsplit("}", 1)[-1] == "svg" else f"root is <{root.tag}>, not <svg>"
    if suffix == ".png":
        if not data.startswith(PNG_SIGNATURE):
            return "no PNG signature"
        try:
            with Image.open(path) as image:
                image.load()  # decodes every pixel: a truncated file fails here
        except (OSError, SyntaxError) as err:
            return f"not a readable PNG: {err}"
        return None
    return f"use PNG or SVG, not {suffix or 'a file without a suffix'}"


def problems(texts: dict[Path, str]) -> list[str]:
    """One line per reference that is remote or does not point at a valid image."""
    found = []
    for source, text in sorted(texts.items()):
        for ref in references(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", ref, re.IGNORECASE):
                found.append(f"{source.name}: {ref}: not a file in the repository (the book "
                             "builds offline)")
                continue
            why = image_problem((source.parent / ref.split("#")[0]).resolve())
            if why:
                found.append(f"{source.name}: {ref}: {why}")
    return found


def test_every_referenced_image_exists_and_is_valid() -> None:
    texts = sources()
    referenced = {(s.parent / r).resolve() for s, t in texts.items() for r in references(t)}
    # Not vacuous: the diagrams and the reference screenshots are all among them.
    expected = set((REPO / "snippets" / "images").glob("*.svg")) | set(OUT.glob("*.png"))
    assert expected and expected <= referenced, sorted(map(str, expected - referenced))
    assert problems(texts) == []


def test_checker_reports_missing_empty_and_corrupt_images(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4), "red").save(tmp_path / "good.png")
    (tmp_path / "good.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:30])
    (tmp_path / "bad.svg").write_text("<svg")
    (tmp_path / "html.svg").write_text("<html/>")
    page = tmp_path / "page.md"
    page.write_text(
        "![ok](good.png) <img src='good.svg'>\n"
        "```{figure} missing.png\nA caption\n```\n"
        "![e](empty.png) ![t](text.png \"title\") ![c](cut.png)\n"
        '<img alt="x" src="bad.svg"> ![h](html.svg) ![w](https://example.org/a.png)\n'
    )
    found = problems({page: page.read_text()})
    assert [line.split(": ")[1] for line in found] == [
        "empty.png", "text.png", "cut.png", "html.svg", "https://example.org/a.png",
        "bad.svg", "missing.png"]
    assert "page.md: missing.png: missing" in found
    assert "page.md: empty.png: empty" in found
    assert "page.md: text.png: no PNG signature" in found
    assert any(line.startswith("page.md: cut.png: not a readable PNG") for line in found)


def test_checker_reads_notebook_markdown_cells(tmp_path: Path) -> None:
    for folder in ("book", "snippets", "notebooks"):
        (tmp_path / folder).mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\n![diagram](images/gone.svg)"),
        nbformat.v4.new_code_cell("echo '![not an image](code.png)'"),
    ])
    nbformat.write(nb, tmp_path / "notebooks" / "0_intro.ipynb")
    assert problems(sources(tmp_path)) == ["0_intro.ipynb: images/gone.svg: missing"]


def test_reference_screenshots_are_shown_small_and_window_sized() -> None:
    shots = sorted(OUT.glob("*.png"))
    assert len(shots) >= 5, "run `make screenshots`"
    shown = {(REFERENCE_PAGE.parent / r).resolve() for r in references(REFERENCE_PAGE.read_text())}
    assert set(shots) <= shown, "screenshots not shown on book/reference.md"
    for shot in shots:
        assert shot.stat().st_size <= MAX_BYTES, f"{shot.name}: {shot.stat().st_size} bytes"
        with Image.open(shot) as image:
            assert image.size == (WINDOW["width"], WINDOW["height"]), f"{shot.name}: {image.size}"
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert "book/reference" in [c["file"] for part in toc["parts"] for c in part["chapters"]]

