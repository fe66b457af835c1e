"""The lab report and the lab doctor: what your lease, cluster and registry say you have done.

    python3 tools/lab_report.py                   # writes lab-report.json and lab-report.html
    python3 tools/lab_report.py --doctor          # where you are, what is wrong, what to do next
    python3 tools/lab_report.py --doctor --quiet  # only the problems (nothing when all is well)

Run it with env.sh sourced (kubectl, the kubeconfig, lab.env). Your answers to the notebook
questions come from answers.md at the top of the repository (copy tools/answers-template.md).
--from-dir reads the cluster's JSON recorded in a folder instead of asking kubectl (tests, the
book's sample). Exit status: 0 written (doctor: no problem found), 1 the doctor found problems.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: tools/ importable as a package
    sys.path.insert(0, str(REPO))

from tools import lab_doctor, lab_env, report_facts  # noqa: E402
from tools.report_digest import SCHEMA_ID, seal  # noqa: E402

ANSWERS = REPO / "answers.md"
OUT_NAME = "lab-report"


def student(values: dict[str, str]) -> dict:
    """Who the report is about, from lab.env."""
    keys = {"project": "PROJECT", "suffix": "SUFFIX", "site": "SITE", "lease_name": "LEASE_NAME",
            "use_gpu": "USE_GPU", "floating_ip": "FLOATING_IP"}
    return {k: values.get(v, "") for k, v in keys.items()}


def identifiers(facts: dict) -> dict:
    """What an instructor can look up elsewhere: the lease id, MLflow run ids, workflow uids."""
    versions = facts["mlflow"].get("versions", [])
    flows = facts["cluster"]["workflows"]
    return {"lease_id": facts["lease"].get("id", ""),
            "run_ids": [v["run_id"] for v in versions if v["run_id"]],
            "workflow_uids": [w["uid"] for w in flows] if isinstance(flows, list) else []}


def git_commit() -> str:
    """The lab repository's commit, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def build(values: dict[str, str], fetch: report_facts.Fetch, api: report_facts.Mlflow,
          lease: Callable[[], dict], answers_text: str | None,
          now: datetime | None = None, model: str = report_facts.MODEL_NAME) -> dict:
    """Read every source and return the sealed report."""
    now = now or datetime.now(UTC)
    try:
        lease_facts = lease()
    except report_facts.SourceError as e:
        lease_facts = {"error": str(e)}
    facts = {
        "lease": lease_facts,
        "cluster": report_facts.cluster(fetch),
        "mlflow": report_facts.mlflow_facts(api, model),
        "answers": report_facts.answers(answers_text or ""),
        "answers_file": answers_text is not None,
    }
    report = {"schema": SCHEMA_ID, "generated": now.isoformat(timespec="seconds"),
              "tool": {"name": "tools/lab_report.py", "commit": git_commit()},
              "student": student(values), "facts": facts, "identifiers": identifiers(facts)}
    return seal(report)


# ---- HTML ----------------------------------------------------------------------------------

STYLE = """
.lab-report { font-family: system-ui, sans-serif; font-size: 14px; }
.lab-report table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
.lab-report th, .lab-report td { border: 1px solid #ccc; padding: 3px 8px; text-align: left;
  vertical-align: top; }
.lab-report .bad { color: #b00020; } .lab-report .good { color: #1b5e20; }
.lab-report pre { white-space: pre-wrap; background: #f6f6f6; padding: 6px; }
"""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    """An HTML table; cells are escaped text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _error_or(section: object, render: Callable[[object], str]) -> str:
    """The rendered section, or the reason its source gave nothing."""
    if isinstance(section, dict) and "error" in section:
        return f'<p class="bad">not available: {html.escape(section["error"])}</p>'
    return render(section)


def _gate(d: dict) -> str:
    """One gate decision on one line."""
    outcome = "pass" if d["passed"] else "refused: " + ", ".join(d["rules_refused"])
    c, p = d["canary"], d["production"]
    return (f"{d['time']} {outcome} (p95 canary {c['p95_s']} s / production {p['p95_s']} s, "
            f"requests {c['requests']} / {p['requests']})")


def body_html(report: dict) -> str:
    """The report as an HTML fragment (the page's body; the book embeds it as is)."""
    f, s = report["facts"], report["student"]
    cluster, registry = f["cluster"], f["mlflow"]
    parts = [f"<style>{STYLE}</style>", '<div class="lab-report">',
             f"<p>Project <b>{html.escape(s['project'])}</b>, suffix "
             f"<b>{html.escape(s['suffix'])}</b>, site {html.escape(s['site'])}; written "
             f"{html.escape(report['generated'])} by {html.escape(report['tool']['name'])}. "
             f"Digest ({report['digest']['algorithm']}): "
             f"<code>{report['digest']['value']}</code></p>",
             "<h3>Lease</h3>",
             _error_or(f["lease"], lambda x: _table(["name", "id", "status", "start", "end"], [
                 [x.get("name"), x.get("id"), x.get("status"), x.get("start"), x.get("end")]])),
             "<h3>Nodes</h3>",
             _error_or(cluster["nodes"], lambda x: _table(
                 ["node", "roles", "ready", "pressure", "GPU", "kubelet"],
                 [[n["name"], ", ".join(n["roles"]), n["ready"], ", ".join(n["pressure"]) or "-",
                   n["gpu"], n["kubelet"]] for n in x])),
             "<h3>Argo CD applications</h3>",
             _error_or(cluster["applications"], lambda x: _table(
                 ["application", "sync", "health", "image tag"],
                 [[a["name"], a["sync"], a["health"], a["image_tag"] or "-"] for a in x])),
             "<h3>Workflows</h3>",
             _error_or(cluster["workflows"], lambda x: _table(
                 ["workflow", "template", "parameters", "phase", "started", "duration",
                  "failed step"],
                 [[w["name"], w["template"],
                   " ".join(f"{k}={v}" for k, v in w["parameters"].items()), w["phase"],
                   w["started"] or "-",
                   f"{w['duration_s']} s" if w["duration_s"] is not None else "-",
                   (f"{w['failed_step']['name']}: {w['failed_step']['message']}"
                    if w["failed_step"] else "-")] for w in x])),
             "<h3>Model registry</h3>"]
    if "error" in registry:
        parts.append(f'<p class="bad">not available: {html.escape(registry["error"])}</p>')
    else:
        parts.append(_table(
            ["version", "scenario", "dataset", "aliases now", "approved", "accuracy",
             "latency ms", "run", "canary-gate decisions"],
            [[v["version"], v["scenario"], v["dataset"], ", ".join(v["aliases"]) or "-",
              v["approved"], v["metrics"].get("accuracy", "-"),
              v["metrics"].get("latency_ms", "-"), v["run_id"],
              "; ".join(_gate(d) for d in v["gates"]) or "-"] for v in registry["versions"]]))
        parts.append(_table(["environment", "alias now", "history (oldest first)"],
                            [[e, registry["aliases"].get(e, "-"), ", ".join(h) or "-"]
                             for e, h in registry["history"].items()]))
    parts += ["<h3>Live route</h3>",
              _error_or(cluster["httproute"], lambda x: _table(
                  ["environment", "weight %"], [[e, w] for e, w in x["weights"].items()])),
              "<h3>Answers</h3>"]
    for question, text in f["answers"].items():
        shown = html.escape(text) if text else '<span class="bad">not answered</span>'
        parts.append(f"<p><b>{question}</b></p><pre>{shown}</pre>")
    parts.append("</div>")
    return "\n".join(parts)


def page(report: dict) -> str:
    """The whole HTML page."""
    title = f"GourmetGram lab report: {report['student']['project']} {report['student']['suffix']}"
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1>\n{body_html(report)}\n"
            "</body></html>\n")


def write(report: dict, out_dir: Path) -> list[Path]:
    """Write lab-report.json and lab-report.html into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data, web = out_dir / f"{OUT_NAME}.json", out_dir / f"{OUT_NAME}.html"
    data.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    web.write_text(page(report))
    return [data, web]


# ---- the command line ----------------------------------------------------------------------

def sources(args: argparse.Namespace, values: dict[str, str]):
    """The fetch, the MLflow client and the lease source the arguments ask for."""
    if args.from_dir:
        folder = Path(args.from_dir)
        fetch = report_facts.folder_fetch(folder)

        def lease() -> dict:
            path = folder / "lease.json"
            if not path.is_file():
                raise report_facts.SourceError(f"lease.json not recorded in {folder}")
            return json.loads(path.read_text())
    else:
        fetch = report_facts.kubectl_fetch

        def lease() -> dict:
            if not values.get("LEASE_NAME"):
                raise report_facts.SourceError("LEASE_NAME is not in lab.env (notebook 1)")
            return report_facts.chameleon_lease(values.get("PROJECT", ""),
                                                values.get("SITE", ""), values["LEASE_NAME"])
    url = args.mlflow or f"http://{values.get('FLOATING_IP', 'localhost')}:8000"
    login = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        login = (os.environ["MLFLOW_TRACKING_USERNAME"],
                 os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    elif not args.from_dir:
        try:
            login = report_facts.kubectl_login()
        except (report_facts.SourceError, OSError, subprocess.TimeoutExpired):
            login = None  # MLflow then answers 401, and the report says so
    return fetch, report_facts.Mlflow(url, login), lease


def main(argv: list[str] | None = None) -> int:
    """Write the report, or (--doctor) say where the student is and what is wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doctor", action="store_true", help="diagnose instead of writing")
    parser.add_argument("--quiet", action="store_true", help="doctor: print only problems")
    parser.add_argument("--from-dir", help="read the cluster's JSON from this folder")
    parser.add_argument("--mlflow", help="MLflow's address (default http://$FLOATING_IP:8000)")
    parser.add_argument("--answers", default=str(ANSWERS), help=f"default {ANSWERS}")
    parser.add_argument("--model", default=report_facts.MODEL_NAME, help="registered model")
    parser.add_argument("--out", default=str(REPO), help="folder for the report (default: "
                        "the repository)")
    args = parser.parse_args(argv)
    values = lab_env.load()
    fetch, api, lease = sources(args, values)
    answers = Path(args.answers)
    report = build(values, fetch, api, lease,
                   answers.read_text() if answers.is_file() else None, model=args.model)
    # Before notebook 5 there is no cluster to reach, and that is no problem yet.
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    expect = bool(args.from_dir) or Path(kubeconfig).is_file()
    if args.doctor:
        progress, problems = lab_doctor.diagnose(report["facts"], datetime.now(UTC),
                                                 expect)
        print(lab_doctor.render(progress, problems, quiet=args.quiet), end="")
        return 1 if problems else 0
    for path in write(report, Path(args.out)):
        print(f"wrote {path}")
    _, problems = lab_doctor.diagnose(report["facts"], datetime.now(UTC), expect)
    if problems:
        print(f"{len(problems)} problem(s) found: python3 tools/lab_report.py --doctor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
