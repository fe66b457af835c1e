"""Find what the lifecycle's workflows made: the version a training registered, its build.

    python3 tools/workflow_lookup.py version gourmetgram-train-x7k2p   # prints e.g. 3
    python3 tools/workflow_lookup.py build 3        # prints build-container-image-q9w4z

Exit status 0 with the answer on stdout; 1 with the reason on stderr when there is none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: tools/ importable as a package
    sys.path.insert(0, str(REPO))

from tools.watch_workflow import kubectl_json  # noqa: E402

# Names in workflows/train-model.yaml and workflows/build-container-image.yaml
# (tests/test_workflow_lookup.py checks them against the templates).
TRAIN_STEP, VERSION_OUTPUT = "train", "model-version"
BUILD_TEMPLATE, VERSION_PARAMETER = "build-container-image", "version"


def trained_version(workflow: dict) -> str | None:
    """The model-version output of a train-model workflow's train step; None if it has none."""
    for node in (workflow.get("status", {}).get("nodes") or {}).values():
        if node.get("displayName") == TRAIN_STEP:
            for output in node.get("outputs", {}).get("parameters", []):
                if output.get("name") == VERSION_OUTPUT and output.get("value"):
                    return output["value"]
    return None


def build_of(workflows: list[dict], version: str) -> str | None:
    """The newest build-container-image workflow for version; None if there is none."""
    builds = [
        w for w in workflows
        if w.get("spec", {}).get("workflowTemplateRef", {}).get("name") == BUILD_TEMPLATE
        and any(p.get("name") == VERSION_PARAMETER and p.get("value") == version
                for p in w["spec"].get("arguments", {}).get("parameters", []))
    ]
    if not builds:
        return None
    # kubectl lists by name, and generated names are random: order by creation instead.
    return max(builds, key=lambda w: w["metadata"]["creationTimestamp"])["metadata"]["name"]


def main(argv: list[str] | None = None) -> int:
    """Command line: `version WORKFLOW` or `build VERSION`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["version", "build"])
    parser.add_argument("name", help="a train-model workflow (version) or a model version (build)")
    parser.add_argument("--namespace", "-n", default="argo")
    args = parser.parse_args(argv)
    if args.what == "version":
        workflow = kubectl_json(["get", "workflow", args.name, "-n", args.namespace])
        answer = trained_version(workflow) if workflow else None
        why = (f"workflow {args.name} registered no version (did its evaluation fail? "
               f"argo logs -n {args.namespace} {args.name})")
    else:
        listing = kubectl_json(["get", "workflows", "-n", args.namespace]) or {}
        answer = build_of(listing.get("items", []), args.name)
        why = (f"no {BUILD_TEMPLATE} workflow for version {args.name} "
               f"(argo list -n {args.namespace})")
    if answer is None:
        print(f"error: {why}", file=sys.stderr)
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
