"""The lab report, its checker and the lab doctor, on a story played against real parts.

MLflow is a real server (another, with the chart's basic-auth login, for the login test).
Each story registers its versions and moves aliases, history, approvals and canary-gate
decisions with the same lifecycle functions the ops.py steps call (no training: the runs
carry logged metrics). The cluster is recorded JSON built from what the repository renders
(tests/cluster_record.py). UPDATE_SAMPLE_REPORT=1 rewrites the book's sample (book/sample/).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import canary
import lifecycle
import ops
import pytest
from mlflow.tracking import MlflowClient

from app.localserver import free_port
from tests import cluster_record
from tests.mlflow_server import MlflowServer
from tests.prometheus_server import PrometheusServer
from tests.test_mlflow_auth import auth_server
from tools import check_report, lab_doctor, lab_report, report_facts
from tools.report_digest import SCHEMA_FILE, digest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "book" / "sample"
LEASE = {"id": "5b0e7c1e-1f5a-4c33-9d0e-000000000021", "name": "mlops-lab-ab12",
         "status": "ACTIVE", "start": "2026-12-07T08:30:00", "end": "2026-12-07T16:30:00"}
VALUES = "PROJECT=CHI-260021\nSUFFIX=ab12\nSITE=KVM@TACC\nLEASE_NAME=mlops-lab-ab12\n" \
         "USE_GPU=false\nFLOATING_IP=203.0.113.10\n"
ANSWER = ("The staging suite checks that the running service answers each photo differently, "
          "which offline evaluation in batches cannot see; a reference set of labelled photos "
          "sent one at a time would also catch it.")
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # during the lease and after the story


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server of this module's own, for the stories (no login: fast writes)."""
    server = MlflowServer(tmp_path_factory.mktemp("report-mlflow")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MlflowServer, str]]:
    """A real MLflow server with the chart's basic-auth settings, and its admin password."""
    password = secrets.token_urlsafe(24)
    server = auth_server(tmp_path_factory.mktemp("report-auth"), password).start()
    yield server, password
    server.stop()


class Story:
    """Notebooks 6-8 played into MLflow (real calls) and into recorded workflow events."""

    def __init__(self, client: MlflowClient, model: str) -> None:
        self.client, self.model = client, model
        self.events: list[dict] = []
        self.images: set[str] = set()
        self.limits = canary.Thresholds()
        self.when = NOW.timestamp() - 3 * 3600
        client.create_registered_model(model)
        experiment = client.get_experiment_by_name("gourmetgram-food11")
        self.experiment = (experiment.experiment_id if experiment else
                           client.create_experiment("gourmetgram-food11"))

    def train(self, scenario: str, name: str | None = None) -> str:
        """train-model: a run with its evaluation metrics, registered as a new version."""
        run = self.client.create_run(self.experiment, run_name=f"train-{scenario}",
                                     tags={"scenario": scenario, "dataset": "sample",
                                           "evaluation": "passed"})
        metrics = {"accuracy": 0.91, "latency_ms": 68.0 if scenario == "slow" else 1.2,
                   "model_bytes": 1.4e9 if scenario == "oversized" else 9.2e6,
                   "tests_passed": 9, "tests_total": 9}
        for key, value in metrics.items():
            self.client.log_metric(run.info.run_id, key, value)
        version = self.client.create_model_version(
            self.model, f"s3://gourmetgram/{run.info.run_id}/model", run_id=run.info.run_id,
            tags={"scenario": scenario, "dataset": "sample", "run_id": run.info.run_id},
            await_creation_for=0).version
        self.client.set_registered_model_alias(self.model, "development", version)
        self.events.append({"template": "train-model", "parameters": {"scenario": scenario},
                            "version": version, **({"name": name} if name else {})})
        return version

    def build(self, version: str, fails_at: str | None = None, message: str = "") -> None:
        """build-container-image: image, staging deployment, suite, approval (or a failure)."""
        self.images.add(f"staging-{version}")
        event = {"template": "build-container-image", "parameters": {"version": version}}
        if fails_at:
            event |= {"phase": "Failed", "failed_step": fails_at, "message": message}
        if fails_at != "rollout":
            lifecycle.record_deploy(self.client, self.model, "staging", version)
        if not fails_at:
            lifecycle.approve(self.client, self.model, version)
        self.events.append(event)

    def gate(self, version: str, canary_p95: float, requests: float = 500) -> bool:
        """The canary gate's verdict on figures, kept as ops.py canary-analysis --record does."""
        production = canary.Figures(500, 0, 0.02, {"Bread": 250, "Soup": 250})
        side = canary.Figures(requests, 0, canary_p95, {"Bread": requests / 2,
                                                        "Soup": requests / 2})
        verdict = canary.judge(side, production, self.limits)
        self.when += 60
        lifecycle.record_gate(self.client, self.model, version, canary.decision(
            verdict, version, "10m", self.limits, when=self.when))
        return verdict.passed

    def promote(self, version: str, source: str, target: str, gate: dict | None = None,
                refuse_check: bool = False) -> None:
        """promote-model: check, the gate from canary, retag, deploy."""
        params = {"source-environment": source, "target-environment": target,
                  "version": version}
        try:
            lifecycle.check_promotion(self.client, self.model, source, target, version)
        except lifecycle.LifecycleError as e:
            assert refuse_check, e
            self.events.append({"template": "promote-model", "parameters": params,
                                "phase": "Failed", "failed_step": "check",
                                "message": f"refused: {e}"})
            return
        if source == "canary" and gate is not None and not self.gate(version, **gate):
            self.events.append({"template": "promote-model", "parameters": params,
                                "phase": "Failed", "failed_step": "canary-analysis",
                                "message": "Error (exit code 1)"})
            return
        self.images.add(f"{target}-{version}")
        lifecycle.record_deploy(self.client, self.model, target, version)
        self.events.append({"template": "promote-model", "parameters": params})

    def rollback(self, env: str) -> str:
        """rollback: back to the version before in history.<env>."""
        target = lifecycle.rollback_target(self.client, self.model, env)
        lifecycle.record_rollback(self.client, self.model, env, target)
        self.events.append({"template": "rollback", "parameters": {"environment": env}})
        return target

    def users(self) -> None:
        """live-users: traffic, no registry change."""
        self.events.append({"template": "live-users", "parameters": {"duration": "420"}})

    def tags(self) -> dict[str, str]:
        """The image tag each Argo CD application runs now (the aliases, after the story)."""
        aliases = dict(self.client.get_registered_model(self.model).aliases)
        return {env: f"{env}-{aliases[env]}" for env in lifecycle.ENVIRONMENTS if env in aliases}


def play(client: MlflowClient, model: str, skip_slow_gate: bool = False) -> Story:
    """The lab from notebook 6 to the end of notebook 8."""
    s = Story(client, model)
    first = s.train("normal", name="gourmetgram-initial-build")  # notebook 6
    s.build(first)
    s.promote(first, "staging", "canary")
    s.promote(first, "canary", "production")  # production is empty: nothing to compare with
    new = s.train("normal")  # notebook 7
    s.build(new)
    s.promote(new, "staging", "canary")  # notebook 8
    s.promote(new, "canary", "production", gate={"canary_p95": 0.02, "requests": 3})
    s.users()
    s.promote(new, "canary", "production", gate={"canary_p95": 0.03})
    slow = s.train("slow")
    s.build(slow)
    s.promote(slow, "staging", "canary")
    s.users()
    if not skip_slow_gate:
        s.promote(slow, "canary", "production", gate={"canary_p95": 0.4})
        s.rollback("canary")
    bad = s.train("bad-architecture")
    s.build(bad, fails_at="staging-suite",
            message="Error (exit code 1): FAIL answers follow the photo")
    s.promote(bad, "staging", "canary", refuse_check=True)
    big = s.train("oversized")
    s.build(big, fails_at="rollout", message="Error (exit code 3): staging never became healthy")
    s.rollback("production")
    return s


@pytest.fixture(scope="module")
def stories(plain: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The good story and one with slow's canary gate skipped, each recorded in a folder."""
    client = MlflowClient(tracking_uri=plain.uri)
    out = {"server": plain}
    del out["server"]
    out = {}
    for label, skip in (("good", False), ("skipped-gate", True)):
        model = f"GourmetGramFood11Model{'' if label == 'good' else 'Skipped'}"
        story = play(client, model, skip_slow_gate=skip)
        folder = cluster_record.write(
            cluster_record.record(story.events, tags=story.tags(),
                                  registry_tags=sorted(story.images)),
            tmp_path_factory.mktemp(label), lease=LEASE)
        out[label] = {"folder": folder, "model": model, "story": story}
    return out


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """lab.env and a filled answers.md in a folder of their own."""
    (tmp_path / "lab.env").write_text(VALUES)
    monkeypatch.setenv("LAB_VALUES", str(tmp_path / "lab.env"))
    template = (REPO / "tools" / "answers-template.md").read_text()
    filled = "\n".join(line + ("\n\n" + ANSWER if line.startswith("## ") else "")
                       for line in template.splitlines())
    (tmp_path / "answers.md").write_text(filled)
    return tmp_path


def report_of(lab: Path, story: dict, server: MlflowServer, *extra: str) -> dict:
    """Run `lab_report.py --from-dir` as the student would; return the JSON it wrote."""
    code = lab_report.main(["--from-dir", str(story["folder"]), "--mlflow", server.uri,
                            "--answers", str(lab / "answers.md"), "--out", str(lab),
                            "--model", story["model"], *extra])
    assert code == 0
    return json.loads((lab / "lab-report.json").read_text())


def checked(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`check_report.py PATH`: exit code and output."""
    capsys.readouterr()
    code = check_report.main([str(path)])
    return code, capsys.readouterr().out


# ---- names and formats ---------------------------------------------------------------------

def test_the_names_are_the_lifecycles_and_the_templates() -> None:
    assert (report_facts.APPROVED_TAG, report_facts.HISTORY_PREFIX, report_facts.GATE_PREFIX) \
        == (lifecycle.APPROVED_TAG, lifecycle.HISTORY_PREFIX, lifecycle.GATE_PREFIX)
    assert report_facts.ENVIRONMENTS == lifecycle.ENVIRONMENTS
    rendered = {p.stem for p in (REPO / "workflows").glob("*.yaml")}
    assert set(report_facts.TEMPLATES) <= rendered
    # Four questions at the end of notebooks 7 and 8, numbered as the report numbers them.
    for notebook in ("7_lifecycle_part_1", "8_lifecycle_part_2"):
        text = (REPO / "snippets" / f"{notebook}.md").read_text()
        questions = text.split("## Questions for the hand-in", 1)[1].split("\n## ", 1)[0]
        numbered = [line for line in questions.splitlines() if line[:2] in {"1.", "2.", "3.",
                                                                           "4.", "5."}]
        assert len(numbered) == 4, notebook
        assert [q for q in report_facts.QUESTIONS if q[0] == notebook[0]] == \
            [f"{notebook[0]}.{i}" for i in range(1, 5)]


def test_answers_come_from_the_headings_of_the_template() -> None:
    template = (REPO / "tools" / "answers-template.md").read_text()
    assert report_facts.answers(template) == {q: "" for q in report_facts.QUESTIONS}
    text = template.replace("## 7.2\n", "## 7.2\n\nThe export ran in training mode.\n")
    found = report_facts.answers(text + "\n## 8.4 (swapped labels)\nNo gate would.\n")
    assert found["7.2"] == "The export ran in training mode."
    assert found["8.4"] == "No gate would."
    assert found["7.1"] == ""


# ---- the report and the rubric -------------------------------------------------------------

def test_the_good_story_passes_every_rubric_line(stories: dict, plain: MlflowServer, lab: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    server = plain
    report = report_of(lab, stories["good"], server)
    import jsonschema

    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    facts = report["facts"]
    assert facts["mlflow"]["aliases"]["production"] == "1"
    assert facts["mlflow"]["history"]["production"] == ["1"]
    assert facts["cluster"]["httproute"]["weights"] == {"production": 90, "canary": 10}
    assert [n["roles"] for n in facts["cluster"]["nodes"]][0] == ["control-plane"]
    slow = next(v for v in facts["mlflow"]["versions"] if v["scenario"] == "slow")
    assert [d["rules_refused"] for d in slow["gates"]] == [["p95 latency"]]
    assert report["identifiers"]["lease_id"] == LEASE["id"]
    assert len(report["identifiers"]["run_ids"]) == 5
    code, out = checked(lab / "lab-report.json", capsys)
    print(out)
    assert code == 0, out
    verdicts = [line.split()[0] for line in out.splitlines() if line[:4] in ("PASS", "FAIL")]
    assert verdicts == ["PASS"] * (2 + len(check_report.RUBRIC)), out
    assert f"total: {len(check_report.RUBRIC)}/{len(check_report.RUBRIC)}" in out
    page = (lab / "lab-report.html").read_text()
    assert "p95 latency" in page and report["digest"]["value"] in page
    if os.environ.get("UPDATE_SAMPLE_REPORT"):  # make sample-report: the book's sample
        SAMPLE.mkdir(exist_ok=True)
        shutil.copy(lab / "lab-report.json", SAMPLE / "lab-report.json")
        (SAMPLE / "lab-report.html").write_text(lab_report.body_html(report))
        (SAMPLE / "check-report.txt").write_text(out)


def test_a_story_with_the_slow_gate_skipped_fails_the_rubric(
        stories: dict, plain: MlflowServer, lab: Path, capsys: pytest.CaptureFixture) -> None:
    server = plain
    report_of(lab, stories["skipped-gate"], server)
    code, out = checked(lab / "lab-report.json", capsys)
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failed == ["FAIL  [  8] slow refused by the canary gate on p95"], out
    assert "0 gate decision(s)" in out
    assert f"total: {len(check_report.RUBRIC) - 1}/{len(check_report.RUBRIC)}" in out


def test_an_edited_report_fails_the_checker(stories: dict, plain: MlflowServer, lab: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    server = plain
    report = report_of(lab, stories["skipped-gate"], server)
    slow = next(v for v in report["facts"]["mlflow"]["versions"] if v["scenario"] == "slow")
    slow["gates"].append({**report_of(lab, stories["good"], server)["facts"]["mlflow"][
        "versions"][2]["gates"][0], "version": slow["version"]})  # a refusal copied in
    edited = lab / "edited.json"
    edited.write_text(json.dumps(report))
    code, out = checked(edited, capsys)
    assert code == 1
    assert out.splitlines()[2].startswith("FAIL  [  -] the digest matches the content"), out
    assert "not judged" in out and "(report not whole)" in out
    # What the digest does not prove: whoever reruns the digest over the edit passes it.
    report["digest"]["value"] = digest(report)
    edited.write_text(json.dumps(report))
    code, out = checked(edited, capsys)
    assert code == 0, out
    # A file that is not a report at all fails the schema.
    edited.write_text(json.dumps({"schema": "something else"}))
    assert checked(edited, capsys)[0] == 1


def test_a_class_folder_gives_one_csv_line_per_student(stories: dict, plain: MlflowServer,
                                                       tmp_path: Path,
                                                       lab: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    server = plain
    hand_ins = tmp_path / "hand-ins"
    for label in ("good", "skipped-gate"):
        report_of(lab, stories[label], server)
        (hand_ins / label).mkdir(parents=True)
        shutil.copy(lab / "lab-report.json", hand_ins / label / "lab-report.json")
    (hand_ins / "broken.json").write_text("{not json")
    capsys.readouterr()
    assert check_report.main([str(hand_ins)]) == 1
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_file = {r["file"]: r for r in rows}
    assert set(by_file) == {"broken.json", "good/lab-report.json",
                            "skipped-gate/lab-report.json"}
    n = len(check_report.RUBRIC)
    assert by_file["good/lab-report.json"]["total"] == f"{n}/{n}"
    assert by_file["good/lab-report.json"]["project"] == "CHI-260021"
    assert by_file["skipped-gate/lab-report.json"]["slow"] == "0"
    assert by_file["skipped-gate/lab-report.json"]["total"] == f"{n - 1}/{n}"
    assert by_file["broken.json"]["schema"] == "0" and by_file["broken.json"]["total"] == f"0/{n}"


def test_the_books_sample_is_a_passing_report_rendered_by_the_tool(
        capsys: pytest.CaptureFixture) -> None:
    report = json.loads((SAMPLE / "lab-report.json").read_text())
    code, out = checked(SAMPLE / "lab-report.json", capsys)
    assert code == 0, out
    assert (SAMPLE / "lab-report.html").read_text() == lab_report.body_html(report)
    assert (SAMPLE / "check-report.txt").read_text() == out


# ---- the doctor ----------------------------------------------------------------------------

def doctor(lab: Path, folder: Path, server_uri: str, model: str, capsys,
           *extra: str) -> tuple[int, str]:
    """`lab_report.py --doctor --from-dir FOLDER`: exit code and output."""
    capsys.readouterr()
    code = lab_report.main(["--doctor", "--from-dir", str(folder), "--mlflow", server_uri,
                            "--answers", str(lab / "answers.md"), "--model", model, *extra])
    return code, capsys.readouterr().out


def test_the_doctor_on_a_finished_lab(stories: dict, plain: MlflowServer, lab: Path,
                                      capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = plain
    good = stories["good"]
    end = datetime.now(UTC) + timedelta(hours=5)  # a lease with hours left
    folder = lab / "recorded"
    shutil.copytree(good["folder"], folder)
    (folder / "lease.json").write_text(json.dumps({**LEASE, "end": end.isoformat()}))
    code, out = doctor(lab, folder, server.uri, good["model"], capsys)
    assert code == 0, out
    for line in ("notebook 1 done", "notebook 5 done: 3 of 3 nodes Ready",
                 "notebook 6 done: the platform is synced", "notebook 7 done: version 2",
                 "notebook 8 done", "No problems found."):
        assert line in out, out
    assert doctor(lab, folder, server.uri, good["model"], capsys, "--quiet") == (0, "")


def broken(folder: Path, case: str) -> None:
    """Change one recorded document of a finished lab into a broken state."""
    def edit(name: str, change) -> None:
        path = folder / f"{name}.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    if case == "lease":
        end = datetime.now(UTC) + timedelta(minutes=40)
        (folder / "lease.json").write_text(json.dumps({**LEASE, "end": end.isoformat()}))
    elif case == "node":
        edit("nodes", lambda d: d["items"].__setitem__(
            1, cluster_record.node("node2", [], ready=False)))
    elif case == "disk":
        edit("nodes", lambda d: d["items"].__setitem__(2, cluster_record.node(
            "node3", [], pressure={"DiskPressure": "kubelet has disk pressure"})))
    elif case == "app":
        edit("applications", lambda d: d["items"].__setitem__(2, cluster_record.application(
            "canary", "canary-2", sync="OutOfSync", health="Progressing")))
    elif case == "pending":
        since = datetime.now(UTC) - timedelta(minutes=22)  # train starts two steps later
        stuck = cluster_record.workflow(
            {"template": "train-model", "parameters": {"scenario": "normal"},
             "phase": "Running", "pending_step": "train",
             "message": "Unschedulable: 0/3 nodes are available: 3 Insufficient memory."},
            99, since)
        edit("workflows", lambda d: d["items"].append(stuck))
    elif case == "mutex":
        waiting = cluster_record.workflow(
            {"template": "promote-model", "parameters": {"version": "2"}, "phase": "Pending",
             "pending_step": "check", "message": "",
             "workflow_message": "Waiting for argo/Mutex/gourmetgram-model-aliases lock. "
                                 "Lock status: 0/1"},
            98, datetime.now(UTC) - timedelta(minutes=12))
        waiting["status"]["nodes"] = {}  # nothing started: the lock holds the whole workflow
        edit("workflows", lambda d: d["items"].append(waiting))
    elif case == "image":
        edit("registry-tags", lambda d: d["tags"].remove("production-1"))


@pytest.mark.parametrize(("case", "what", "next_step"), [
    ("lease", "lease mlops-lab-ab12 ends at", "extend it now"),
    ("node", "node node2 is NotReady", "kubectl describe node node2"),
    ("disk", "node node3's disk is filling up (DiskPressure", "sudo crictl rmi --prune"),
    ("app", "Argo CD application gourmetgram-canary is OutOfSync and Progressing",
     "kubectl -n argocd describe application gourmetgram-canary"),
    ("pending", "train has been Pending for 20 min: Unschedulable: 0/3 nodes are available: "
     "3 Insufficient memory", "argo list -n argo --running"),
    ("mutex", "the whole workflow has been Pending for 12 min: Waiting for "
     "argo/Mutex/gourmetgram-model-aliases lock", "another workflow holds the alias lock"),
    ("image", "alias production points at version 1, but the registry has no image "
     "gourmetgram-app:production-1", "workflowtemplate/rollback -p environment=production"),
])
def test_the_doctor_names_each_broken_state_and_the_next_step(
        case: str, what: str, next_step: str, stories: dict, plain: MlflowServer, lab: Path,
        capsys: pytest.CaptureFixture) -> None:
    server = plain
    good = stories["good"]
    folder = lab / "recorded"
    shutil.copytree(good["folder"], folder)
    (folder / "lease.json").write_text(json.dumps(
        {**LEASE, "end": (datetime.now(UTC) + timedelta(hours=5)).isoformat()}))
    broken(folder, case)
    code, out = doctor(lab, folder, server.uri, good["model"], capsys, "--quiet")
    assert code == 1
    assert out.startswith("Problems (1):"), out
    assert what in out and next_step in out.split("next: ", 1)[1], out


def test_the_report_reads_mlflow_with_its_login_and_says_when_it_cannot(
        stories: dict, login, lab: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, password = login
    client = MlflowClient(tracking_uri=server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    story = Story(client, "GourmetGramFood11Model")
    story.train("normal")
    good = {**stories["good"], "model": "GourmetGramFood11Model"}
    report = report_of(lab, good, server)
    (version,) = report["facts"]["mlflow"]["versions"]
    assert (version["scenario"], version["metrics"]["accuracy"]) == ("normal", 0.91)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password + "x")
    code, out = doctor(lab, good["folder"], server.uri, good["model"], capsys, "--quiet")
    assert code == 1 and "MLflow is not answering" in out and "answered HTTP 401" in out, out
    down = f"http://127.0.0.1:{free_port()}"
    code, out = doctor(lab, good["folder"], down, good["model"], capsys, "--quiet")
    assert code == 1
    assert f"MLflow is not answering: MLflow at {down} did not answer" in out
    assert "next: kubectl -n gourmetgram-platform get pods" in out


def test_the_doctor_before_the_cluster_exists_says_only_where_you_are() -> None:
    facts = {"lease": dict(LEASE, end="2026-12-07T16:30:00"),
             "cluster": report_facts.cluster(report_facts.folder_fetch(Path("/nonexistent"))),
             "mlflow": {"url": "http://x", "error": "no answer"}, "answers": {},
             "answers_file": False}
    lines, problems = lab_doctor.diagnose(facts, NOW, expect_cluster=False)
    assert problems == []
    assert lines == ["notebook 1 done: lease mlops-lab-ab12 is ACTIVE until 2026-12-07T16:30:00",
                     "notebook 5 not done: kubectl reaches no cluster"]
    _, problems = lab_doctor.diagnose(facts, NOW, expect_cluster=True)
    assert [p.what.split(":")[0] for p in problems] == ["kubectl cannot read the cluster"]
    # Blazar's times have no zone; they are UTC: 16:30 is 4 h 30 min after NOW.
    assert lab_doctor.lease_problems(facts["lease"], NOW) == []
    late = NOW.replace(hour=15, minute=50)
    (problem,) = lab_doctor.lease_problems(facts["lease"], late)
    assert "in 40 min" in problem.what


# ---- the sources ---------------------------------------------------------------------------

def test_the_lease_comes_from_python_chi(monkeypatch: pytest.MonkeyPatch) -> None:
    """chameleon_lease with a stand-in for python-chi's two modules (no Chameleon here)."""
    import types

    calls = []

    class FakeLease:
        id, name, status = LEASE["id"], LEASE["name"], "ACTIVE"
        start_date = datetime(2026, 12, 7, 8, 30)
        end_date = datetime(2026, 12, 7, 16, 30)

    context = types.SimpleNamespace(version=None, set=lambda k, v: calls.append((k, v)),
                                    use_site=lambda s: calls.append(("site", s)))
    lease = types.SimpleNamespace(get_lease=lambda name: FakeLease if name == LEASE["name"]
                                  else (_ for _ in ()).throw(ValueError(f"no lease {name}")))
    chi = types.ModuleType("chi")
    chi.context, chi.lease = context, lease
    monkeypatch.setitem(sys.modules, "chi", chi)
    got = report_facts.chameleon_lease("CHI-260021", "KVM@TACC", LEASE["name"])
    assert got == {**LEASE, "start": "2026-12-07T08:30:00", "end": "2026-12-07T16:30:00"}
    assert context.version == "1.0"
    assert calls == [("project_name", "CHI-260021"), ("site", "KVM@TACC")]
    with pytest.raises(report_facts.SourceError, match="did not give lease other"):
        report_facts.chameleon_lease("CHI-260021", "KVM@TACC", "other")


def test_ops_canary_analysis_records_the_verdict(plain: MlflowServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a real Prometheus nobody has called: refused (too few requests), and kept."""
    server = plain
    client = MlflowClient(tracking_uri=server.uri)
    name = "GourmetGramGateRecord"
    client.create_registered_model(name)
    client.create_model_version(name, "s3://gourmetgram/none/model")
    # Production runs a version: not a first release, so the gate judges the live figures.
    client.set_registered_model_alias(name, "production", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    prometheus = PrometheusServer(tmp_path / "prometheus", {
        "global": {"scrape_interval": "15s"}, "scrape_configs": []}).start()
    try:
        code = ops.main(["--model", name, "canary-analysis", "--version", "1",
                         "--prometheus", prometheus.url, "--record"])
    finally:
        prometheus.stop()
    assert code == ops.REFUSED, capsys.readouterr().err
    (kept,) = lifecycle.gate_decisions(client.get_model_version(name, "1").tags)
    assert kept["passed"] is False
    assert kept["rules_refused"] == ["too few requests to judge"] * 2
    assert kept["canary"]["requests"] == 0 and math.isclose(kept["thresholds"]["p95_ratio"],
                                                            1.25)


def test_the_instructors_page_lists_every_rubric_line() -> None:
    page = (REPO / "book" / "instructors.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in page.splitlines()
            if line.startswith("| `")]
    assert [key for key, *_ in check_report.RUBRIC] == [r for r in rows
                                                         if r in dict.fromkeys(
                                                             k for k, *_ in check_report.RUBRIC)]
    assert len({key for key, *_ in check_report.RUBRIC} & set(rows)) == len(check_report.RUBRIC)
    assert f"at least {check_report.MIN_ANSWER_WORDS} words" in page
