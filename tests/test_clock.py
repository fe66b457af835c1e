"""The lab's clock (snippets/clock.yml): every wait has a figure, every figure a source."""

from __future__ import annotations

import re

import pytest

from tools import lab_clock
from tools.make_notebooks import snippet_files

CODE = re.compile(r"^::: \{\.cell \.code[^\n]*\n```\w+\n(.*?)^```", re.M | re.S)
# What makes a cell wait: a playbook, Terraform creating, destroying or downloading, a
# download or an install, a wait for Kubernetes or Argo, a lease deleted, the lab report.
WAITS = re.compile(
    r"ansible-playbook|\bterraform\b\W+(apply|destroy|init)\b|\bwget\b|pip install|git clone"
    r"|\bkubectl\b[^\n|&]*\bwait\b|\bargo submit\b[^\n]*--(wait|watch)\b|watch_workflow\.py"
    r"|\.delete\(\)|make report")


def code_cells() -> list[tuple[str, str]]:
    """(snippet name, source) of every code cell of the lab."""
    return [(path.name, m.group(1)) for path in snippet_files()
            for m in CODE.finditer(path.read_text())]


def test_every_cell_that_watches_a_workflow_has_a_figure() -> None:
    missing = [(name, src.splitlines()[0]) for name, src in code_cells()
               if "watch_workflow.py" in src and not lab_clock.marks(src)]
    assert missing == []


def test_every_cell_that_waits_in_notebooks_2_to_9_has_a_figure() -> None:
    missing = [(name, src.splitlines()[0]) for name, src in code_cells()
               if name[0] in "23456789" and WAITS.search(src) and not lab_clock.marks(src)]
    assert missing == []


def test_the_wait_finder_sees_each_kind_of_wait() -> None:
    for src in ("ansible-playbook site.yml", "terraform apply -auto-approve", "terraform init",
                'subprocess.run(["terraform", "destroy", "-auto-approve"])', "wget -q URL",
                "python3 -m pip install --user x", "kubectl -n argocd wait app/x --for=y",
                "argo submit -n argo --from workflowtemplate/t --wait", "found.delete()"):
        assert WAITS.search(src), src
    for src in ('subprocess.run(["terraform", "plan", "-destroy"])', "terraform version",
                "kubectl get pods", "argo submit -n argo --from workflowtemplate/t -o name"):
        assert not WAITS.search(src), src


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


# ---- the plan: one figure for the whole lab, from the clock, wherever the text gives one ----

REPO = lab_clock.REPO
PLAN_TEXTS = ("README.md", "book/instructors.md", "book/intro.md", "notebooks/0_intro.ipynb")


def clock_page() -> str:
    """book/clock.md, generated with the notebooks (test_notebooks keeps it fresh)."""
    return (REPO / "book" / "clock.md").read_text()


def test_every_text_that_gives_the_lab_time_takes_it_from_the_clock() -> None:
    (whole,) = re.findall(r"the whole lab: about (\d+) minutes", clock_page())
    figure = lab_clock.hours(int(whole))
    assert f"({figure})" in clock_page()
    for path in PLAN_TEXTS:
        text = (REPO / path).read_text()
        assert figure in text, f"{path} does not say {figure!r}"
        for stale in ("afternoon", "four to six hours", "4-6 hours"):
            assert stale not in text, f"{path} still says {stale!r}"
    # Notebook 0 is generated with the figure in it; its snippet says LAB_TIME.
    assert lab_clock.LAB_TIME in (REPO / "snippets" / "0_intro.md").read_text()


def test_the_book_lists_each_chapters_time_as_the_clock_does() -> None:
    clock = dict(re.findall(r"^\| (\d+)_\w+ \|.*\| about (\d+) \|", clock_page(), re.M))
    intro = (REPO / "book" / "intro.md").read_text()
    listed = dict(re.findall(r"^\| (\d) \| .+ \| (\d+) min \|$", intro, re.M))
    assert listed == clock and len(clock) == 10


def test_one_sitting_fits_its_lease_and_two_split_after_notebook_6() -> None:
    from tools import lease_plan

    (whole,) = re.findall(r"the whole lab: about (\d+) minutes", clock_page())
    assert int(whole) <= 60 * lease_plan.lease_hours(1) - 60, "an hour of margin at least"
    first, second = (int(m) for m in re.findall(
        r"notebooks 0 to 6, about (\d+) minutes, then 7 to 9, about (\d+)", clock_page())[0])
    assert first + second == int(whole)
    intro = (REPO / "snippets" / "0_intro.md").read_text()
    assert "stop after notebook 6" in intro
    assert "notebook 0 says how" in (REPO / "snippets" / "6_configure_platform.md").read_text()


def test_a_started_wait_counts_only_what_is_left_after_the_cells_between() -> None:
    clock = {"reading": {"words_per_minute": {"value": 100}, "minutes_per_cell": {"value": 1},
                         "minutes_per_question": {"value": 4}},
             "parts": {"build": {"minutes": 10, "basis": "estimate", "source": "x"}},
             "waits": {"build": {"parts": ["build"]}}}
    cells = [("code", "# [clock: start build]\nsubmit"), ("markdown", "word " * 300),
             ("code", "# [clock: build]\nwatch")]
    t, lefts = lab_clock.timeline(clock, cells)
    # 3 minutes of reading, then the watch cell's own minute: 7 of the 10 are left.
    assert lefts == [[], [], [7.0]] and t.waiting == 7 and t.alongside == 3
    many = [("code", "# [clock: start build]\nsubmit"), ("markdown", "word " * 1500),
            ("code", "# [clock: build]\nwatch")]
    t, lefts = lab_clock.timeline(clock, many)
    assert lefts[2] == [0.0] and t.waiting == 0 and t.alongside == 10
    # Without a start, the same wait counts whole; a start nobody waits for is an error.
    assert lab_clock.timeline(clock, cells[1:])[0].waiting == 10
    with pytest.raises(ValueError, match="never waited for"):
        lab_clock.timeline(clock, cells[:2])


def test_every_started_wait_is_waited_for_in_the_same_notebook() -> None:
    by_notebook: dict[str, list[str]] = {}
    for name, src in code_cells():
        by_notebook.setdefault(name, []).append(src)
    clock = lab_clock.load()
    for name, sources in by_notebook.items():
        started = [w for src in sources for w in lab_clock.starts(src)]
        waited = [w for src in sources for w in lab_clock.waits(src)]
        for wait in set(started):
            assert not clock["waits"][wait].get("background"), (name, wait)
            assert waited.count(wait) >= started.count(wait), (name, wait)
