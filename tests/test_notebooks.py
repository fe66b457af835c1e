"""The generated notebooks: up to date, valid, tagged, and true to the repository."""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import http.server
import os
import re
import shlex
import subprocess
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

from tools import make_notebooks

REPO = make_notebooks.REPO
NOTEBOOKS = sorted(
    (REPO / "notebooks").glob("*.ipynb"), key=lambda p: int(p.stem.split("_", 1)[0])
)
ALLOWED_TAGS = {"chameleon", "cluster", "parameters"}
KERNELS = {"bash": "bash", "python3": "python"}
# Top-level folders whose paths a cell may name; such a path must exist.
REPO_DIRS = ("tf", "ansible", "k8s", "workflows", "train", "app", "tools", "book", "notebooks")
# Files a student creates while following the lab (ignored by git, so absent here).
CREATED_BY_STUDENT = {"clouds.yaml", "kubeconfig", "lab.env"}
CREATED_SUFFIXES = (".auto.tfvars.json",)


def submodules() -> tuple[str, ...]:
    """Paths of git submodules (checked out on Chameleon, absent in a plain clone)."""
    gitmodules = REPO / ".gitmodules"
    text = gitmodules.read_text() if gitmodules.exists() else ""
    return tuple(m + "/" for m in re.findall(r"^\s*path = (\S+)", text, re.M))


def load(path: Path) -> nbformat.NotebookNode:
    """Read a notebook."""
    return nbformat.read(path, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """Return the notebook's code cells."""
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_ten_numbered_notebooks() -> None:
    assert [p.stem.split("_", 1)[0] for p in NOTEBOOKS] == [str(i) for i in range(10)]


def test_committed_notebooks_match_the_snippets() -> None:
    assert make_notebooks.main(["--check"]) == 0, "run `make notebooks` and commit"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    make_notebooks.build(first)
    make_notebooks.build(second)
    names = sorted(nb.name for nb in first.glob("*.ipynb"))
    assert len(names) == 10 and names == sorted(nb.name for nb in second.glob("*.ipynb"))
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_toc_lists_every_notebook_in_order() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    listed = [c for c in chapters if c.startswith("notebooks/")]
    assert listed == [f"notebooks/{p.stem}" for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestNotebook:
    def test_valid_nbformat_4(self, path: Path) -> None:
        nb = load(path)
        assert nb.nbformat == 4
        nbformat.validate(nb)

    def test_starts_with_h1_title(self, path: Path) -> None:
        first = load(path).cells[0]
        assert first.cell_type == "markdown" and re.match(r"# \S", first.source)

    def test_kernel_fits_the_work(self, path: Path) -> None:
        nb = load(path)
        kernel = nb.metadata.kernelspec.name
        assert kernel in KERNELS
        assert nb.metadata.language_info.name == KERNELS[kernel]
        imports_chi = re.compile(r"^\s*(from|import) chi\b", re.M)
        uses_chi = any(imports_chi.search(c.source) for c in code_cells(nb))
        assert uses_chi == (kernel == "python3"), "python-chi notebooks use python3, others bash"

    def test_code_cells_carry_known_tags(self, path: Path) -> None:
        cells = code_cells(load(path))
        for cell in cells:
            tags = cell.metadata.get("tags")
            assert isinstance(tags, list), f"{cell.id}: tags must be a list"
            assert set(tags) <= ALLOWED_TAGS, f"{cell.id}: unknown tags {set(tags) - ALLOWED_TAGS}"
        params = [c for c in cells if "parameters" in c.metadata.tags]
        assert len(params) == 1, "exactly one papermill parameters cell"
        assert params[0].metadata.tags == ["parameters"], "the parameters cell must run anywhere"

    def test_python_cells_compile(self, path: Path) -> None:
        nb = load(path)
        if nb.metadata.kernelspec.name != "python3":
            return
        for cell in code_cells(nb):
            if cell.source.lstrip().startswith("%%"):
                continue  # cell magics (e.g. %%bash) are not Python
            source = "\n".join(
                "pass" if line.lstrip().startswith(("%", "!")) else line
                for line in cell.source.splitlines()
            )
            ast.parse(source, filename=f"{path.name}:{cell.id}")

    def test_bash_cells_fail_when_any_command_fails(self, path: Path) -> None:
        nb = load(path)
        if nb.metadata.kernelspec.name != "bash":
            return
        for cell in code_cells(nb):
            assert unchained_commands(cell.source) == [], (
                f"{cell.id}: bash_kernel only reports the last command's status; "
                "chain these lines with && or split the cell"
            )

    def test_repository_paths_exist(self, path: Path) -> None:
        missing = [p for p in referenced_paths(load(path)) if not (REPO / p).exists()]
        assert missing == [], f"cells name paths that are not in the repository: {missing}"


# A plain assignment cannot fail: NAME=value, or NAME=$OTHER/path (no command substitution).
ASSIGNMENT = re.compile(r"^(export\s+)?[A-Za-z_]\w*=(\$\{?\w+\}?)?[^`$(]*$")


FUNCTION_START = re.compile(r"^[A-Za-z_]\w*\(\)\s*\{$")


def logical_lines(source: str) -> list[str]:
    """The cell's command lines, a quoted string that spans lines joined into one."""
    lines: list[str] = []
    buffer = ""
    for raw in source.splitlines():
        buffer = f"{buffer}\n{raw}" if buffer else raw
        try:
            shlex.split(buffer, comments=True)
        except ValueError:  # an open quote: the string goes on on the next line
            continue
        lines.append(buffer.rstrip())
        buffer = ""
    if buffer:
        lines.append(buffer.rstrip())
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def unchained_commands(source: str) -> list[str]:
    """Return command lines, other than the last, whose failure would go unnoticed.

    A function definition (``name() {`` to ``}``) runs nothing, so its body is not checked.
    """
    commands = []
    in_function = False
    for line in logical_lines(source):
        if in_function:
            in_function = line.strip() != "}"
            continue
        if FUNCTION_START.match(line.strip()):
            in_function = True
            continue
        commands.append(line)
    bad = []
    for line in commands[:-1]:
        stripped = line.strip()
        if stripped.endswith(("&&", "\\", "|", "||")) or ASSIGNMENT.match(stripped):
            continue
        bad.append(stripped.splitlines()[0])
    return bad


def test_unchained_commands_sees_through_quotes_and_function_definitions() -> None:
    chained = "X=$(jq '.a\n  | .b' f) &&\necho \"$X\""
    assert unchained_commands(chained) == []
    assert unchained_commands("f() {\n  false\n  true\n}\necho ok") == []
    assert unchained_commands("false\necho ok") == ["false"]
    assert unchained_commands("jq '.a\n| .b' f\necho ok") == ["jq '.a"]


def referenced_paths(nb: nbformat.NotebookNode) -> list[str]:
    """Repository paths named by code cells, resolved against the cells' `cd` commands."""
    cwd = Path(".")
    found: list[str] = []
    for cell in code_cells(nb):
        for line in cell.source.splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                words = line.split()
            for i, word in enumerate(words):
                from_root = bool(re.match(r"^\$\{?REPO_DIR\}?/", word))
                word = re.sub(r"^\$\{?REPO_DIR\}?/?", "", word).rstrip(",;)")
                if i > 0 and words[i - 1] == "cd":
                    if word.split("/")[0] in REPO_DIRS:
                        cwd = Path(word)
                    continue
                if from_root or (word.split("/")[0] in REPO_DIRS and "/" in word):
                    found.append(word)
                elif re.fullmatch(r"[\w./-]+\.(ya?ml|tf|py|sh|json|template|cfg)", word):
                    found.append(str(cwd / word))
    return [
        p for p in dict.fromkeys(found)
        if "$" not in p and "*" not in p and Path(p).name not in CREATED_BY_STUDENT
        and not p.endswith(CREATED_SUFFIXES) and not p.startswith(("/", "~", *submodules()))
    ]


# ---- jq: installed by notebook 2, used by notebooks 6-8 --------------------------------------

JQ_INSTALL = "install -m 0755 jq-linux-amd64 /work/.local/bin/jq"
# jq as a command: at the start of a line, after a pipe or ;/&&/||, or inside $( ).
JQ_COMMAND = re.compile(r"(?:^|[|;&]|\$\()\s*jq\b", re.M)


def number(path: Path) -> int:
    """The notebook's number, from its file name."""
    return int(path.stem.split("_", 1)[0])


def jq_install_cell() -> str:
    """The code cell of notebook 2 that installs jq."""
    nb = load(REPO / "notebooks" / "2_setup_env.ipynb")
    (cell,) = [c for c in code_cells(nb) if JQ_INSTALL in c.source]
    assert "chameleon" in cell.metadata.get("tags", [])  # it downloads: Chameleon only
    return cell.source


def test_jq_is_installed_before_any_notebook_uses_it() -> None:
    users = [p for p in NOTEBOOKS
             if any(JQ_COMMAND.search(c.source) for c in code_cells(load(p)))]
    installers = [p for p in NOTEBOOKS if any(JQ_INSTALL in c.source for c in code_cells(load(p)))]
    assert [p.name for p in installers] == ["2_setup_env.ipynb"]
    assert {number(p) for p in users} >= {6, 7, 8}
    assert all(number(p) > number(installers[0]) for p in users if p not in installers)
    # Into the same folder as kubectl, which notebooks 3-8 put on the PATH.
    setup = "\n".join(c.source for c in code_cells(load(installers[0])))
    assert "install -m 0755 kubectl /work/.local/bin/kubectl" in setup


def test_the_jq_version_comes_from_versions_yml() -> None:
    pin = yaml.safe_load((REPO / "versions.yml").read_text())["jq_version"]
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", str(pin)), pin
    setup = "\n".join(c.source for c in code_cells(load(REPO / "notebooks" / "2_setup_env.ipynb")))
    assert "JQ_VERSION=$(sed -n 's/^jq_version: *//p' \"$REPO_DIR/versions.yml\"" in setup
    assert "https://github.com/jqlang/jq/releases/download/jq-${JQ_VERSION}" in jq_install_cell()


def run_jq_install(tmp_path: Path, tamper: bool) -> subprocess.CompletedProcess:
    """Notebook 2's jq cell, run for real against a release folder served on loopback."""
    release = tmp_path / "release" / "jq-1.7.1"
    release.mkdir(parents=True)
    binary = release / "jq-linux-amd64"  # a stand-in program, served like the release's
    binary.write_text("#!/bin/sh\necho jq-1.7.1\n")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    (release / "sha256sum.txt").write_text(
        f"{'0' * 64}  jq-linux-arm64\n{digest}  jq-linux-amd64\n{'1' * 64}  jq-macos-amd64\n")
    if tamper:
        binary.write_text("#!/bin/sh\necho altered\n")
    return run_download_cell(tmp_path, jq_install_cell(),
                             "https://github.com/jqlang/jq/releases/download",
                             {"JQ_VERSION": "1.7.1"})


def run_download_cell(tmp_path: Path, source: str, release_url: str,
                      env: dict[str, str]) -> subprocess.CompletedProcess:
    """A download cell run in bash, its release URL served from tmp_path/release on loopback."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / "release"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bin_dir, downloads = tmp_path / "bin", tmp_path / "downloads"
    bin_dir.mkdir()
    downloads.mkdir()
    source = (source.replace(release_url, f"http://127.0.0.1:{server.server_address[1]}")
              .replace("/work/.local/bin", str(bin_dir))
              .replace("/tmp/lab-downloads", str(downloads)))
    try:
        return subprocess.run(["bash", "-c", source], capture_output=True, text=True,
                              env={**os.environ, **env,
                                   "PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=60)
    finally:
        server.shutdown()
        server.server_close()


def test_the_jq_cell_installs_a_binary_that_matches_the_release_checksum(
    tmp_path: Path,
) -> None:
    result = run_jq_install(tmp_path, tamper=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "jq-linux-amd64: OK" in result.stdout
    assert result.stdout.rstrip().endswith("jq-1.7.1")
    assert os.access(tmp_path / "bin" / "jq", os.X_OK)


def test_the_jq_cell_refuses_a_binary_that_does_not_match(tmp_path: Path) -> None:
    result = run_jq_install(tmp_path, tamper=True)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert not (tmp_path / "bin" / "jq").exists()


# ---- every jq program of the notebooks, compiled by the real jq ------------------------------
JQ_OPTIONS_WITH_TWO_ARGS = {"--arg", "--argjson", "--slurpfile", "--rawfile"}


def jq_programs(source: str) -> list[list[str]]:
    """Each jq call of a bash cell as [options..., program], read the way bash splits it."""
    calls = []
    for line in logical_lines(source):
        words = shlex.split(line.replace("$(", " ").replace(")", " ) "), comments=True)
        for i, word in enumerate(words):
            if word != "jq":
                continue
            args, j = [], i + 1
            while j < len(words) and words[j].startswith("-"):
                take = 3 if words[j] in JQ_OPTIONS_WITH_TWO_ARGS else 1
                args += words[j:j + take]
                j += take
            if j < len(words):
                calls.append([*args, words[j]])
    return calls


def jq_compile_error(call: list[str]) -> str:
    """jq's compile error for one call on null input, or '' (a runtime error is fine)."""
    result = subprocess.run(["jq", "-n", *call], input="", capture_output=True, text=True)
    return result.stderr if "compile error" in result.stderr or result.returncode == 3 else ""


def test_every_jq_program_in_the_notebooks_compiles() -> None:
    calls = [(p.name, call) for p in NOTEBOOKS if load(p).metadata.kernelspec.name == "bash"
             for cell in code_cells(load(p)) for call in jq_programs(cell.source)]
    assert len(calls) >= 15, calls  # notebooks 6-8 read most answers with jq
    errors = [(name, call[-1], err) for name, call in calls if (err := jq_compile_error(call))]
    assert errors == []


def test_the_jq_check_catches_a_broken_program() -> None:
    (call,) = jq_programs("X=$(curl -fsS u | jq -er --arg v \"$V\" '.a | select(.b ==')")
    assert call[:3] == ["-er", "--arg", "v"]
    assert jq_compile_error(call)
    assert not jq_compile_error(["-e", ".status.nodes[] | .phase"])


def run_argo_install(tmp_path: Path, tamper: bool) -> subprocess.CompletedProcess:
    """Notebook 2's Argo CLI cell, run for real against a release folder served on loopback."""
    nb = load(REPO / "notebooks" / "2_setup_env.ipynb")
    (cell,) = [c for c in code_cells(nb) if "argo-linux-amd64.gz" in c.source]
    assert "chameleon" in cell.metadata.get("tags", [])  # it downloads: Chameleon only
    release = tmp_path / "release" / "v4.1.4"
    release.mkdir(parents=True)
    archive = release / "argo-linux-amd64.gz"  # a stand-in program, gzipped like the release's
    archive.write_bytes(gzip.compress(b"#!/bin/sh\necho v4.1.4\n"))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (release / "argo-workflows-cli-checksums.txt").write_text(
        f"{'0' * 64}  argo-darwin-amd64.gz\n{digest}  argo-linux-amd64.gz\n"
        f"{'1' * 64}  argo-linux-arm64.gz\n")
    if tamper:
        archive.write_bytes(gzip.compress(b"#!/bin/sh\necho altered\n"))
    return run_download_cell(tmp_path, cell.source,
                             "https://github.com/argoproj/argo-workflows/releases/download",
                             {"ARGO_VERSION": "v4.1.4"})


def test_the_argo_cell_installs_a_binary_that_matches_the_release_checksum(
    tmp_path: Path,
) -> None:
    result = run_argo_install(tmp_path, tamper=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "argo-linux-amd64.gz: OK" in result.stdout
    assert result.stdout.rstrip().endswith("v4.1.4")
    assert os.access(tmp_path / "bin" / "argo", os.X_OK)


def test_the_argo_cell_refuses_a_binary_that_does_not_match(tmp_path: Path) -> None:
    result = run_argo_install(tmp_path, tamper=True)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
    assert not (tmp_path / "bin" / "argo").exists()
