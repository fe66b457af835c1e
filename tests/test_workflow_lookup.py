"""tools/workflow_lookup.py: the version a training registered, the newest build of a version."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools import workflow_lookup as lookup

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"


def template(name: str) -> dict:
    """A WorkflowTemplate of workflows/, parsed."""
    return yaml.safe_load((WORKFLOWS / f"{name}.yaml").read_text())


def build_workflow(name: str, version: str, created: str) -> dict:
    """A build workflow as train-model's start-build step creates it, given a name and a time."""
    templates = template("train-model")["spec"]["templates"]
    (step,) = [t for t in templates if t["name"] == "start-build"]
    manifest = step["resource"]["manifest"].replace("{{inputs.parameters.version}}", version)
    workflow = yaml.safe_load(manifest)
    workflow["metadata"] |= {"name": name, "creationTimestamp": created}
    return workflow


def trained(version: str | None) -> dict:
    """A finished train-model workflow whose train step wrote version (or nothing)."""
    outputs = {"parameters": [{"name": lookup.VERSION_OUTPUT, "value": version or ""}]}
    return {"status": {"nodes": {
        "wf": {"displayName": "gourmetgram-train-x7k2p", "type": "Steps"},
        "wf-1": {"displayName": "prepare", "type": "Pod", "outputs": {"parameters": []}},
        "wf-2": {"displayName": lookup.TRAIN_STEP, "type": "Pod", "outputs": outputs},
    }}}


def test_the_names_are_those_of_the_templates() -> None:
    train = template("train-model")["spec"]["templates"]
    steps = [s["name"] for t in train for group in t.get("steps") or [] for s in group]
    assert lookup.TRAIN_STEP in steps
    (step,) = [s for t in train for group in t.get("steps") or [] for s in group
               if s["name"] == lookup.TRAIN_STEP]
    (train_template,) = [t for t in train if t["name"] == step["template"]]
    assert lookup.VERSION_OUTPUT in [p["name"] for p in train_template["outputs"]["parameters"]]
    build = template(lookup.BUILD_TEMPLATE)
    assert build["metadata"]["name"] == lookup.BUILD_TEMPLATE
    parameters = [p["name"] for p in build["spec"]["arguments"]["parameters"]]
    assert lookup.VERSION_PARAMETER in parameters


def test_trained_version_reads_the_train_steps_output() -> None:
    assert lookup.trained_version(trained("7")) == "7"
    assert lookup.trained_version(trained(None)) is None  # evaluation failed: nothing registered
    assert lookup.trained_version({"status": {}}) is None


def test_build_of_takes_the_newest_build_of_that_version() -> None:
    workflows = [
        build_workflow("build-container-image-zzzzz", "3", "2026-12-03T09:00:00Z"),
        build_workflow("build-container-image-aaaaa", "3", "2026-12-03T10:00:00Z"),  # a re-run
        build_workflow("build-container-image-mmmmm", "4", "2026-12-03T11:00:00Z"),
        {"metadata": {"name": "promote-model-abcde", "creationTimestamp": "2026-12-03T12:00:00Z"},
         "spec": {"workflowTemplateRef": {"name": "promote-model"},
                  "arguments": {"parameters": [{"name": "version", "value": "3"}]}}},
    ]
    assert lookup.build_of(workflows, "3") == "build-container-image-aaaaa"
    assert lookup.build_of(workflows, "4") == "build-container-image-mmmmm"
    assert lookup.build_of(workflows, "5") is None


@pytest.mark.parametrize(("argv", "found", "code", "out"), [
    (["version", "wf"], trained("7"), 0, "7\n"),
    (["version", "wf"], trained(None), 1, ""),
    (["version", "wf"], None, 1, ""),
    (["build", "3"], {"items": [build_workflow("b-1", "3", "2026-12-03T09:00:00Z")]}, 0, "b-1\n"),
    (["build", "9"], {"items": []}, 1, ""),
])
def test_command_line_prints_the_answer_or_says_why_not(
    monkeypatch, capsys, argv: list[str], found: dict | None, code: int, out: str
) -> None:
    asked = []
    monkeypatch.setattr(lookup, "kubectl_json", lambda args: asked.append(args) or found)
    assert lookup.main(argv) == code
    captured = capsys.readouterr()
    assert captured.out == out
    assert (captured.err == "") == (code == 0), captured.err
    expected = ["get", "workflow", "wf"] if argv[0] == "version" else ["get", "workflows"]
    assert asked == [[*expected, "-n", "argo"]]


# What an inline lookup of the same things looks like in a cell (jq over the workflows).
INLINE_LOOKUPS = ('select(.displayName == "train")',
                  'select(.spec.workflowTemplateRef.name == "build-container-image")')


def inline_lookups(text: str) -> list[str]:
    """The inline jq lookups of a snippet that the tool replaces."""
    return [pattern for pattern in INLINE_LOOKUPS if pattern in text]


def test_the_notebooks_use_the_tool_not_inline_lookups() -> None:
    """jq's `last` took the last build by name; generated names are random."""
    snippets = sorted((WORKFLOWS.parent / "snippets").glob("*.md"))
    assert {p.name: inline_lookups(p.read_text()) for p in snippets
            if inline_lookups(p.read_text())} == {}
    users = {p.stem for p in snippets if "tools/workflow_lookup.py" in p.read_text()}
    assert "6_configure_platform" in users
    # The check sees the form notebook 6 had.
    old = ("jq -er --arg v \"$V\" '[.items[]\n"
           "    | select(.spec.workflowTemplateRef.name == \"build-container-image\")")
    assert inline_lookups(old) == [INLINE_LOOKUPS[1]]
