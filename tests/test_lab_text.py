"""The lab text as a student and an instructor meet it: length, hand-in, repository address."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

from tools import word_count

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
INSTRUCTORS = (REPO / "book" / "instructors.md").read_text()
MARKER = "**Screenshot for the hand-in:**"
MAX_SCREENSHOTS = 5  # issue 21: only what the lab report cannot show
QUESTIONS = "## Questions for the hand-in"


def markdown(path: Path) -> list[str]:
    """The notebook's markdown cells."""
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def number(path: Path) -> int:
    """The notebook's number, from its file name."""
    return int(path.stem.split("_", 1)[0])


def test_the_student_prose_fits_one_sitting() -> None:
    total = sum(word_count.counts().values())
    assert total <= word_count.MAX_WORDS, f"{total} words of prose; at most {word_count.MAX_WORDS}"


def test_prose_words_leave_out_fenced_code() -> None:
    cell = "Run this:\n\n```bash\nmake sample-data train serve\n```\n\nthen `make test`."
    assert word_count.prose_words(cell) == 5


def screenshots() -> list[tuple[int, int]]:
    """Each numbered hand-in screenshot as (notebook, number), in the order of the lab."""
    shots = []
    for path in NOTEBOOKS:
        for source in markdown(path):
            for paragraph in source.split("\n\n"):
                if MARKER in paragraph:
                    text = paragraph.split(MARKER, 1)[1]
                    found = [int(n) for n in re.findall(r"\((\d+)\)", text)]
                    assert found, f"{path.name}: a marker without a numbered screenshot"
                    shots += [(number(path), n) for n in found]
    return shots


def test_hand_in_screenshots_are_numbered_once_and_at_most_five() -> None:
    shots = screenshots()
    assert [n for _, n in shots] == list(range(1, len(shots) + 1))
    assert 1 <= len(shots) <= MAX_SCREENSHOTS


def test_no_screenshot_is_asked_for_without_the_marker() -> None:
    for path in NOTEBOOKS:
        for source in markdown(path):
            assert not re.search(r"take (a|two) screenshots?", source, re.I), path.name


def test_instructors_list_every_hand_in_screenshot() -> None:
    rows = re.findall(r"^\| (\d+) \| (\d+) \|", INSTRUCTORS, re.M)
    assert [(int(nb), int(n)) for n, nb in rows] == screenshots()


def questions(path: Path) -> list[str]:
    """The numbered questions of the notebook's hand-in cell."""
    cells = [s for s in markdown(path) if QUESTIONS in s]
    assert len(cells) == 1, f"{path.name}: one cell with {QUESTIONS!r}"
    section = cells[0].split(QUESTIONS, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^(\d+)\. ", section, re.M)


def test_each_lifecycle_notebook_asks_three_or_four_questions_with_answers() -> None:
    for path in NOTEBOOKS:
        if number(path) not in (7, 8):
            assert not any(QUESTIONS in s for s in markdown(path)), path.name
            continue
        found = questions(path)
        assert 3 <= len(found) <= 4 and found == [str(i) for i in range(1, len(found) + 1)]
        for n in found:
            label = f"{number(path)}.{n}"
            assert f"- **{label}**" in INSTRUCTORS, f"no answer notes for question {label}"


def test_the_repository_address_has_one_source() -> None:
    url = yaml.safe_load((REPO / "versions.yml").read_text())["repo_url"]
    assert url.endswith(".git")
    book = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    assert f"{book}.git" == url, "_config.yml repository.url differs from versions.yml repo_url"
    intro = (REPO / "snippets" / "0_intro.md").read_text()
    (default,) = re.findall(r'^REPO_URL = "([^"]+)"', intro, re.M)
    assert default == url, "notebook 0's REPO_URL differs from versions.yml repo_url"
    pulls = re.findall(r"git-pull\?repo=([^&\s`]+)", intro)
    assert pulls and all(f"{p}.git" == url for p in pulls)


CHI_VERSION = 'context.version = "1.0"'
CHI_NOTEBOOKS = ("0_intro", "1_reserve", "9_delete")


def chi_version_problems(sources: list[str]) -> list[str]:
    """The first cell that imports python-chi must set context.version before any call."""
    import ast

    for source in sources:
        tree = ast.parse(source)
        imported = {alias.asname or alias.name for node in tree.body
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chi")
                    for alias in node.names}
        if not imported:
            continue
        for node in tree.body:
            if ast.dump(node) == ast.dump(ast.parse(CHI_VERSION).body[0]):
                return []
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if names & imported and not isinstance(node, ast.ImportFrom):
                return [f"python-chi is used before {CHI_VERSION}: {ast.unparse(node)}"]
        return [f"the first python-chi cell never sets {CHI_VERSION}"]
    return ["no cell imports python-chi"]


def test_python_chi_notebooks_set_the_context_version_first() -> None:
    """Before python-chi 1.2 the default was 0.17.12, whose leases are dicts (no .name)."""
    for stem in CHI_NOTEBOOKS:
        nb = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"
                and "from chi" in c.source]
        assert chi_version_problems(code) == [], stem
    # Every notebook that imports python-chi is one of them.
    users = {p.stem for p in NOTEBOOKS if "from chi " in p.read_text()}
    assert users == set(CHI_NOTEBOOKS)


def test_chi_version_check_catches_a_late_or_missing_version() -> None:
    late = 'from chi import context\n\ncontext.use_site("KVM@TACC")\ncontext.version = "1.0"\n'
    assert chi_version_problems([late]) == [
        f"python-chi is used before {CHI_VERSION}: context.use_site('KVM@TACC')"]
    assert chi_version_problems(["from chi import context\ncontext.version = '0.17.12'\n"])
    missing = "from chi import lease\n\nx = 1\n"
    assert chi_version_problems([missing]) == [
        f"the first python-chi cell never sets {CHI_VERSION}"]
    assert chi_version_problems(['from chi import context\ncontext.version = "1.0"\n']) == []


# Folders of the repository that a command line may name (bash cells of notebook 5).
REPO_FOLDERS = ("ansible", "pre_k8s", "post_k8s", "inventory", "k8s", "kubespray", "tf")


def relative_path_problems(source: str) -> list[str]:
    """A cell that changes directory or names a repository file without $REPO_DIR."""
    problems = []
    for line in source.splitlines():
        words = line.replace("&&", " ").replace("(", " ").split()
        if "cd" in words:
            problems.append(f"changes directory: {line.strip()}")
        for word in words:
            path = word.strip("\"'").lstrip("./")
            if path.split("/", 1)[0] in REPO_FOLDERS and "/" in path:
                problems.append(f"relative path {word}: {line.strip()}")
    return problems


def test_notebook_5_cells_run_in_any_order() -> None:
    """Every cell names its files from $REPO_DIR, so re-running one after another works."""
    nb = nbformat.read(REPO / "notebooks" / "5_deploy_k8s.ipynb", as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    assert [p for source in cells for p in relative_path_problems(source)] == []
    assert sum("$REPO_DIR/ansible/" in source for source in cells) >= 6


def test_relative_path_check_catches_the_old_cells() -> None:
    old = ('cd "$REPO_DIR/ansible/k8s/kubespray" &&\n'
           "ANSIBLE_ROLES_PATH=roles ansible-playbook -i ../inventory/mycluster ./cluster.yml")
    assert len(relative_path_problems(old)) == 2
    assert relative_path_problems("ansible-playbook pre_k8s/pre_k8s_configure.yml") == [
        "relative path pre_k8s/pre_k8s_configure.yml: "
        "ansible-playbook pre_k8s/pre_k8s_configure.yml"]
    assert relative_path_problems('cat "$REPO_DIR/ansible/pre_k8s/x.yml"') == []


def test_the_credential_check_fails_without_clouds_yaml(tmp_path: Path) -> None:
    """Notebook 2's check: a missing file is a failure, not "no placeholder found"."""
    import subprocess

    nb = nbformat.read(REPO / "notebooks" / "2_setup_env.ipynb", as_version=4)
    (cell,) = [c.source for c in nb.cells if c.cell_type == "code"
               and 'grep -n "REPLACE_WITH"' in c.source]
    clouds = tmp_path / "tf" / "kvm" / "clouds.yaml"

    def status() -> int:
        run = subprocess.run(["bash", "-c", cell], env={"REPO_DIR": str(tmp_path)},
                             capture_output=True, text=True)
        return run.returncode

    assert status() != 0  # no file
    clouds.parent.mkdir(parents=True)
    clouds.write_text('application_credential_id: "REPLACE_WITH_APPLICATION_CREDENTIAL_ID"\n')
    assert status() != 0  # the placeholder is still there
    clouds.write_text('application_credential_id: "a1b2c3"\n')
    assert status() == 0
