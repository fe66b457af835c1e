"""The instructors' checker: a lab report against the rubric, one line per item with its evidence.

    python3 tools/check_report.py lab-report.json     # the rubric, pass or fail, and a total
    python3 tools/check_report.py hand-ins/ > class.csv   # one CSV line per report in a folder

A report must first be whole: valid against tools/schemas/lab-report-v1.schema.json, and its
digest must match its content (book/instructors.md says what that proves). Exit status: 0 every
line passed (for a folder: every report), 1 something failed, 2 bad command line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.report_digest import SCHEMA_FILE, digest  # noqa: E402
from tools.report_facts import APPLICATIONS, QUESTIONS  # noqa: E402

SCENARIOS = ("normal", "bad-architecture", "oversized", "slow")
MIN_ANSWER_WORDS = 15
MIN_NODES = 3


@dataclass(frozen=True)
class Line:
    """One rubric line's outcome."""

    key: str
    notebook: str
    text: str
    passed: bool
    evidence: str


def _list(section: object) -> list[dict]:
    """A cluster section, or nothing when its source failed."""
    return section if isinstance(section, list) else []


def _flows(facts: dict, template: str) -> list[dict]:
    """The workflows of one template."""
    return [w for w in _list(facts["cluster"]["workflows"]) if w["template"] == template]


def _versions(facts: dict) -> list[dict]:
    """The registered versions, or none when MLflow gave nothing."""
    return facts["mlflow"].get("versions", [])


def _builds(facts: dict, version: str) -> list[dict]:
    """The build-container-image workflows of a version."""
    return [w for w in _flows(facts, "build-container-image")
            if w["parameters"].get("version") == version]


def check_cluster(facts: dict) -> tuple[bool, str]:
    """The lease is known and the nodes are all Ready."""
    lease, nodes = facts["lease"], _list(facts["cluster"]["nodes"])
    ready = [n["name"] for n in nodes if n["ready"]]
    ok = "id" in lease and len(nodes) >= MIN_NODES and len(ready) == len(nodes)
    where = (f"lease {lease['name']} ({lease['id']}, {lease['status']})" if "id" in lease
             else f"no lease: {lease.get('error')}")
    return ok, f"{where}; {len(ready)} of {len(nodes)} nodes Ready ({', '.join(ready)})"


def check_platform(facts: dict) -> tuple[bool, str]:
    """The four Argo CD applications are Synced and Healthy."""
    apps = {a["name"]: a for a in _list(facts["cluster"]["applications"])}
    states = [f"{n} {apps[n]['sync']}/{apps[n]['health']}" if n in apps else f"{n} missing"
              for n in APPLICATIONS]
    ok = all(n in apps and apps[n]["sync"] == "Synced" and apps[n]["health"] == "Healthy"
             for n in APPLICATIONS)
    return ok, "; ".join(states)


def check_training(facts: dict) -> tuple[bool, str]:
    """At least four succeeded train-model runs, one per scenario."""
    done = [w for w in _flows(facts, "train-model") if w["phase"] == "Succeeded"]
    seen = {s: [w["name"] for w in done if w["parameters"].get("scenario") == s]
            for s in SCENARIOS}
    ok = len(done) >= len(SCENARIOS) and all(seen.values())
    return ok, f"{len(done)} succeeded; " + "; ".join(
        f"{s}: {', '.join(names) or 'none'}" for s, names in seen.items())


def _caught(facts: dict, scenario: str, step: str) -> tuple[bool, str]:
    """A version of scenario whose build failed at step and which was never approved."""
    notes = []
    for v in _versions(facts):
        if v["scenario"] != scenario:
            continue
        failed = [w for w in _builds(facts, v["version"])
                  if w["phase"] == "Failed" and (w["failed_step"] or {}).get("name") == step]
        if failed and not v["approved"]:
            message = failed[0]["failed_step"]["message"]
            return True, (f"version {v['version']}: {failed[0]['name']} failed at {step} "
                          f"({message}); not approved")
        notes.append(f"version {v['version']}: builds "
                     + (", ".join(f"{w['phase']} at {(w['failed_step'] or {}).get('name', '-')}"
                                  for w in _builds(facts, v["version"])) or "none")
                     + ("; approved" if v["approved"] else ""))
    return False, "; ".join(notes) or f"no {scenario} version registered"


def check_bad_architecture(facts: dict) -> tuple[bool, str]:
    """bad-architecture: refused by the staging suite."""
    return _caught(facts, "bad-architecture", "staging-suite")


def check_oversized(facts: dict) -> tuple[bool, str]:
    """oversized: its staging rollout failed and the previous image came back."""
    return _caught(facts, "oversized", "rollout")


def check_slow(facts: dict) -> tuple[bool, str]:
    """slow: the canary gate refused it on p95 and it never reached production."""
    history = facts["mlflow"].get("history", {}).get("production", [])
    notes = []
    for v in _versions(facts):
        if v["scenario"] != "slow":
            continue
        p95 = [d for d in v["gates"] if not d["passed"] and "p95 latency" in d["rules_refused"]]
        if p95 and v["version"] not in history:
            d = p95[-1]
            return True, (f"version {v['version']} refused at {d['time']}: canary p95 "
                          f"{d['canary']['p95_s']} s vs production {d['production']['p95_s']} s "
                          f"({', '.join(d['rules_refused'])}); never in production")
        notes.append(f"version {v['version']}: {len(v['gates'])} gate decision(s), "
                     f"none refusing on p95" if not p95 else
                     f"version {v['version']} reached production")
    return False, "; ".join(notes) or "no slow version registered"


def check_rollback(facts: dict) -> tuple[bool, str]:
    """A production rollback succeeded, and the registry agrees with it."""
    done = [w for w in _flows(facts, "rollback") if w["phase"] == "Succeeded"
            and w["parameters"].get("environment") == "production"]
    registry = facts["mlflow"]
    history = registry.get("history", {}).get("production", [])
    alias = registry.get("aliases", {}).get("production")
    ok = bool(done) and bool(history) and history[-1] == alias
    return ok, (f"{', '.join(w['name'] for w in done) or 'no succeeded production rollback'}; "
                f"history.production {','.join(history) or 'empty'}, alias production {alias}")


def check_production(facts: dict) -> tuple[bool, str]:
    """Production serves a version that passed every gate."""
    registry = facts["mlflow"]
    alias = registry.get("aliases", {}).get("production")
    version = next((v for v in _versions(facts) if v["version"] == alias), None)
    if version is None:
        return False, f"alias production is {alias or 'not set'}"
    passes = [d for d in version["gates"] if d["passed"]]
    history = registry.get("history", {}).get("production", [])
    # Production's first version had no production to be compared with (notebook 6).
    first = bool(history) and history[0] == alias
    app = next((a for a in _list(facts["cluster"]["applications"])
                if a["name"] == "gourmetgram-production"), {})
    gate = ("passed the canary gate" if passes or not first
            else "first in production (no canary comparison possible)")
    checks = {"evaluation passed": version["evaluation"] == "passed",
              "approved by staging": version["approved"],
              gate: bool(passes) or first,
              f"image production-{alias} deployed": app.get("image_tag") == f"production-{alias}"}
    return all(checks.values()), f"version {alias} ({version['scenario']}): " + ", ".join(
        f"{name} {'yes' if ok else 'NO'}" for name, ok in checks.items())


def check_answers(facts: dict) -> tuple[bool, str]:
    """Every question answered in at least MIN_ANSWER_WORDS words."""
    counts = {q: len(facts["answers"].get(q, "").split()) for q in QUESTIONS}
    short = [q for q, n in counts.items() if n < MIN_ANSWER_WORDS]
    file = "" if facts["answers_file"] else "no answers.md; "
    return not short, file + ", ".join(f"{q}: {n} words" for q, n in counts.items())


RUBRIC: list[tuple[str, str, str, Callable[[dict], tuple[bool, str]]]] = [
    ("cluster", "1-5", "the lease and the cluster: every node Ready", check_cluster),
    ("platform", "6", "the platform: four Argo CD applications Synced and Healthy",
     check_platform),
    ("training", "7-8", "a succeeded train-model run for each of the four scenarios",
     check_training),
    ("bad-architecture", "8", "bad-architecture refused by the staging suite",
     check_bad_architecture),
    ("oversized", "8", "oversized rolled back by the staging deployment", check_oversized),
    ("slow", "8", "slow refused by the canary gate on p95", check_slow),
    ("rollback", "8", "a production rollback, recorded in the history", check_rollback),
    ("production", "8", "production serves a version that passed every gate", check_production),
    ("answers", "7-8", f"the eight questions answered (at least {MIN_ANSWER_WORDS} words each)",
     check_answers),
]


def integrity(report: dict) -> list[Line]:
    """The two lines every report must pass first: the schema, then the digest."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(report),
                    key=lambda e: list(e.path))
    schema_line = Line("schema", "-", f"valid against {SCHEMA_FILE.name}", not errors,
                       "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message[:120]}"
                                 for e in errors[:3]) or "valid")
    stated = (report.get("digest") or {}).get("value", "")
    actual = digest(report)
    digest_line = Line("digest", "-", "the digest matches the content", stated == actual,
                       f"stated {stated[:16]}..., computed {actual[:16]}..."
                       if stated != actual else f"sha256 {actual[:16]}...")
    return [schema_line, digest_line]


def check(report: dict) -> list[Line]:
    """Every line: integrity first; the rubric only for a report that is whole."""
    lines = integrity(report)
    whole = all(line.passed for line in lines)
    for key, notebook, text, rule in RUBRIC:
        if whole:
            passed, evidence = rule(report["facts"])
        else:
            passed, evidence = False, "not judged: the report is not whole (see above)"
        lines.append(Line(key, notebook, text, passed, evidence))
    return lines


def render(lines: list[Line]) -> str:
    """The rubric as text, with the total."""
    out = [f"{'PASS' if line.passed else 'FAIL'}  [{line.notebook:>3}] {line.text}\n"
           f"        {line.evidence}" for line in lines]
    rubric = lines[2:]
    out.append(f"total: {sum(line.passed for line in rubric)}/{len(rubric)} rubric lines"
               f"{'' if all(line.passed for line in lines[:2]) else ' (report not whole)'}")
    return "\n".join(out) + "\n"


def load(path: Path) -> dict:
    """A report file, parsed; an unreadable file is an empty report (it fails the schema)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def class_csv(folder: Path, out) -> bool:
    """One CSV line per *.json report under folder; True when every report passed."""
    writer = csv.writer(out)
    keys = ["schema", "digest", *(key for key, *_ in RUBRIC)]
    writer.writerow(["file", "project", "suffix", *keys, "total"])
    everyone = True
    for path in sorted(folder.rglob("*.json")):
        report = load(path)
        lines = check(report)
        student = report.get("student") if isinstance(report.get("student"), dict) else {}
        writer.writerow([path.relative_to(folder), student.get("project", ""),
                         student.get("suffix", ""), *(int(line.passed) for line in lines),
                         f"{sum(line.passed for line in lines[2:])}/{len(RUBRIC)}"])
        everyone &= all(line.passed for line in lines)
    return everyone


def main(argv: list[str] | None = None) -> int:
    """Check one report, or every report in a folder (CSV on stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a lab-report.json, or a folder of them")
    args = parser.parse_args(argv)
    path = Path(args.path)
    if path.is_dir():
        return 0 if class_csv(path, sys.stdout) else 1
    if not path.is_file():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    lines = check(load(path))
    print(render(lines), end="")
    return 0 if all(line.passed for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
