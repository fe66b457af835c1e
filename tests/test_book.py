"""The book: builds offline with warnings as errors, and every chapter and diagram shows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from playwright.sync_api import sync_playwright

from tools.screenshots import CHROMIUM_ARGS, OUT

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "_build" / "html"
SCREENSHOT = REPO / "_build" / "book-screenshot.png"


def chapters() -> list[str]:
    """The notebook chapters listed in _toc.yml, in order."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [f for f in files if f.startswith("notebooks/")]


def landing_page() -> str:
    """The root page of _toc.yml as built HTML (index.html is only a redirect to it)."""
    return yaml.safe_load((REPO / "_toc.yml").read_text())["root"] + ".html"


def title(chapter: str) -> str:
    """A chapter's H1 title, as the navigation shows it."""
    nb = nbformat.read(REPO / f"{chapter}.ipynb", as_version=4)
    return nb.cells[0].source.splitlines()[0].removeprefix("# ").strip()


@pytest.fixture(scope="module")
def site() -> Path:
    """Build the book exactly as `make book` does and return the HTML folder."""
    jb = Path(sys.executable).parent / "jupyter-book"
    shutil.rmtree(REPO / "_build", ignore_errors=True)
    result = subprocess.run(
        [str(jb), "build", str(REPO), "--warningiserror", "--keep-going",
         "--path-output", str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return SITE


def test_every_chapter_page_is_built(site: Path) -> None:
    assert (site / "index.html").exists()
    for chapter in chapters():
        page = site / f"{chapter}.html"
        assert page.exists(), page
        html = page.read_text()
        assert "download" in html.lower(), f"{chapter}: no download button"
        assert "jupyter.chameleoncloud.org" in html, f"{chapter}: no Chameleon launch button"


def test_site_in_a_browser_shows_every_chapter_and_diagram(site: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run tools/install_system_packages.sh"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((site / landing_page()).as_uri())
        nav = page.locator("nav.bd-links").inner_text()
        for chapter in chapters():
            assert title(chapter) in nav, f"{title(chapter)!r} missing from the navigation"
        page.screenshot(path=str(SCREENSHOT), full_page=False)

        pages_with_diagrams = {landing_page()} | {
            f"{c}.html" for c in chapters() if ".svg" in (REPO / f"{c}.ipynb").read_text()
        }
        seen = set()
        for name in sorted(pages_with_diagrams):
            page.goto((site / name).as_uri())
            images = page.eval_on_selector_all(
                "article img[src$='.svg']",
                "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])",
            )
            broken = [src for src, ok in images if not ok]
            assert not broken, f"{name}: diagrams that did not load: {broken}"
            seen |= {Path(src).name for src, _ in images}
        browser.close()
    drawn = {p.name for p in (REPO / "snippets" / "images").glob("*.svg")}
    assert drawn and drawn <= seen, f"diagrams never shown in the book: {drawn - seen}"


def test_reference_page_shows_every_screenshot(site: Path) -> None:
    """book/reference.md: each committed screenshot loads in the browser, with a caption."""
    shots = {p.name for p in OUT.glob("*.png")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((site / "book" / "reference.html").as_uri())
        figures = page.eval_on_selector_all(
            "article figure",
            "fs => fs.map(f => [f.querySelector('img').getAttribute('src'),"
            " f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0,"
            " (f.querySelector('figcaption') || {innerText: ''}).innerText.trim()])",
        )
        browser.close()
    assert shots and {Path(src).name for src, _, _ in figures} == shots
    assert [src for src, loaded, _ in figures if not loaded] == []
    assert all(caption for _, _, caption in figures), figures
