"""Lifecycle commands for the Argo workflows: `python ops.py <command> --help`.

Run from train/ (the training image's working directory) or as `python train/ops.py`.
MLflow is the one at MLFLOW_TRACKING_URI (the local mlruns/ store when it is unset).

Exit codes:
  0  done
  1  refused: a lifecycle rule said no, the registry lacks the version or alias, or the
     Kubernetes API said no (403, 404); also any other error, such as an --out folder
     that cannot be written
  2  bad command line
  3  deployment failed; the previous image is running again
  4  deployment failed and restoring the previous image failed too: a person must look
  5  MLflow, Prometheus or the Kubernetes API could not be reached or had a server error
     (worth retrying)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import canary
import config
import lifecycle
import rollout
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

OK, REFUSED, USAGE, RESTORED, NOT_RESTORED, UNREACHABLE = 0, 1, 2, 3, 4, 5
PRODUCTION = "production"
FAILED = REFUSED  # any other error, e.g. an --out folder that cannot be written
# Longer than the chart's progressDeadlineSeconds (300), so that a version that never gets
# ready shows as Degraded, and fails the deploy at once, before this wait runs out.
DEPLOY_TIMEOUT_S = 360.0
# MLflow error codes that mean "the server could not answer", not "the server said no".
TRANSIENT_MLFLOW = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def version_number(text: str) -> str:
    """argparse type: a model version is a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a model version is a positive integer, not {text!r}")
    return str(int(text))


def client() -> MlflowClient:
    """An MLflow client for the configured tracking server."""
    return MlflowClient(tracking_uri=config.tracking_uri())


def cmd_download(args: argparse.Namespace) -> str:
    """Write model.onnx, model.pth and versions.txt for a version (or an alias) into --out."""
    import shutil
    import tempfile

    import mlflow.artifacts
    from model import ONNX_FILE, TORCH_FILE, VERSIONS_FILE

    # models:/ URIs resolve against mlflow's global tracking URI, not the client's.
    mlflow.set_tracking_uri(config.tracking_uri())
    c = client()
    version = args.version
    if args.alias:
        version = lifecycle.aliases(c, args.model).get(args.alias)
        if version is None:
            raise lifecycle.LifecycleError(f"no version of {args.model} has alias {args.alias!r}")
    lifecycle.check_version(c, args.model, version)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".download-") as tmp:
        # The logged model holds data/model.pth and extra_files/model.onnx (registry.py).
        folder = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{args.model}/{version}", dst_path=tmp))
        files = {ONNX_FILE: folder / "extra_files" / ONNX_FILE,
                 TORCH_FILE: folder / "data" / TORCH_FILE}
        missing = [name for name, path in files.items() if not path.is_file()]
        if missing:
            raise lifecycle.LifecycleError(
                f"version {version} of {args.model} has no {' or '.join(missing)} "
                "(registered before the ONNX export?)")
        for name, path in files.items():
            shutil.move(path, out / name)
    (out / VERSIONS_FILE).write_text(f"{version}\n")
    print(f"version {version} written to {out / ONNX_FILE}, {out / TORCH_FILE} and "
          f"{out / VERSIONS_FILE}", file=args.log)
    return version


def cmd_set_alias(args: argparse.Namespace) -> str:
    """Point an alias at a version."""
    lifecycle.set_alias(client(), args.model, args.alias, args.version)
    return args.version


def cmd_approve(args: argparse.Namespace) -> str:
    """Mark the version staging runs as approved (approved=true)."""
    lifecycle.approve(client(), args.model, args.version)
    return args.version


def cmd_check_promotion(args: argparse.Namespace) -> str:
    """Exit 0 only if the version may be promoted from --source to --target."""
    lifecycle.check_promotion(client(), args.model, args.source, args.target, args.version)
    return args.version


def cmd_canary_analysis(args: argparse.Namespace) -> str:
    """Exit 0 only if live metrics say canary --version may replace production (canary.py)."""
    try:
        first_release = lifecycle.aliases(client(), args.model).get(PRODUCTION) is None
    except (lifecycle.LifecycleError, MlflowException):  # no such model: judge the figures
        first_release = False
    if first_release:
        # The first release (notebook 6): no production traffic exists to compare it with.
        return (f"production runs no version yet: version {args.version} is the first "
                "release, with nothing to compare it with, so the gate lets it through")
    keep = None
    if args.record:  # the verdict, pass or refusal, as a tag of the version in MLflow
        def keep(decision: dict) -> None:
            lifecycle.record_gate(client(), args.model, args.version, decision)
    code, message = canary.run_gate(args, keep)
    if code == canary.UNREACHABLE:
        raise ConnectionError(message)
    if code != canary.OK:
        raise lifecycle.LifecycleError(message)
    return message


def cmd_record_deploy(args: argparse.Namespace) -> str:
    """Move alias --env to the version and append it to history.<env>."""
    return ",".join(lifecycle.record_deploy(client(), args.model, args.env, args.version))


def cmd_record_rollback(args: argparse.Namespace) -> str:
    """Drop the newest history.<env> entry and move alias --env back to the version."""
    return ",".join(lifecycle.record_rollback(client(), args.model, args.env, args.version))


def cmd_rollback_target(args: argparse.Namespace) -> str:
    """Print the version --env ran before its current one."""
    return lifecycle.rollback_target(client(), args.model, args.env)


def cmd_current(args: argparse.Namespace) -> str:
    """Print the version --env runs (its alias)."""
    return lifecycle.current(client(), args.model, args.env)


def cmd_history(args: argparse.Namespace) -> str:
    """Print history.<env>, oldest first."""
    return ",".join(lifecycle.history(client(), args.model, args.env))


def cmd_deploy(args: argparse.Namespace) -> str:
    """Point gourmetgram-<env> at --tag, wait until healthy, restore the old tag if not."""
    lifecycle.check_environment(args.env)
    api = rollout.ClusterApplications(server=args.api_server)
    name = rollout.app_name(args.env)
    previous = rollout.rollout(
        api, name, args.tag, timeout=args.timeout, poll=args.poll,
        log=lambda line: print(line, file=args.log, flush=True),
    )
    print(f"{name} runs {args.tag} (before: {previous or 'the chart default'})", file=args.log)
    return args.tag


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per lifecycle action."""
    p = argparse.ArgumentParser(
        prog="ops.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default=config.MODEL_NAME, help="registered model name")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    def add(name: str, func: Callable[[argparse.Namespace], str]) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=func.__doc__, description=func.__doc__)
        cmd.set_defaults(func=func)
        return cmd

    envs = lifecycle.ENVIRONMENTS
    cmd = add("download", cmd_download)
    which = cmd.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", type=version_number)
    which.add_argument("--alias")
    cmd.add_argument("--out", required=True,
                     help="folder for model.onnx, model.pth and versions.txt")

    cmd = add("set-alias", cmd_set_alias)
    cmd.add_argument("--alias", required=True)
    cmd.add_argument("--version", required=True, type=version_number)

    cmd = add("approve", cmd_approve)
    cmd.add_argument("--version", required=True, type=version_number)

    cmd = add("check-promotion", cmd_check_promotion)
    cmd.add_argument("--source", required=True, choices=envs)
    cmd.add_argument("--target", required=True, choices=envs)
    cmd.add_argument("--version", required=True, type=version_number)

    cmd = add("canary-analysis", cmd_canary_analysis)
    canary.add_gate_flags(cmd)
    cmd.add_argument("--record", action="store_true",
                     help=f"keep the verdict as version tag {lifecycle.GATE_PREFIX}<UTC time>")

    for name, func in (("record-deploy", cmd_record_deploy),
                       ("record-rollback", cmd_record_rollback)):
        cmd = add(name, func)
        cmd.add_argument("--env", required=True, choices=envs)
        cmd.add_argument("--version", required=True, type=version_number)

    for name, func in (("rollback-target", cmd_rollback_target), ("current", cmd_current),
                       ("history", cmd_history)):
        add(name, func).add_argument("--env", required=True, choices=envs)

    cmd = add("deploy", cmd_deploy)
    cmd.add_argument("--env", required=True, choices=envs)
    cmd.add_argument("--tag", required=True, help="image tag, e.g. staging-3")
    cmd.add_argument("--timeout", type=float, default=DEPLOY_TIMEOUT_S,
                     help=f"seconds to wait for Healthy+Synced (default {DEPLOY_TIMEOUT_S:g})")
    cmd.add_argument("--poll", type=float, default=5.0, help="seconds between checks")
    cmd.add_argument("--api-server", help="Kubernetes API URL, e.g. http://127.0.0.1:8001 "
                     "from `kubectl proxy` (default: the in-cluster service account)")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run one command; print its answer on out and any error on err (stdout, stderr)."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    args.log = err
    try:
        print(args.func(args), file=out)
        return OK
    except lifecycle.LifecycleError as e:
        print(f"ops.py {args.command}: refused: {e}", file=err)
        return REFUSED
    except rollout.RolloutFailed as e:
        print(f"ops.py {args.command}: {e}", file=err)
        return RESTORED if e.restored else NOT_RESTORED
    except rollout.ClusterError as e:
        print(f"ops.py {args.command}: {e}", file=err)
        return UNREACHABLE if e.transient else FAILED
    except MlflowException as e:
        print(f"ops.py {args.command}: MLflow: {e.message}", file=err)
        return UNREACHABLE if e.error_code in TRANSIENT_MLFLOW else REFUSED
    except ConnectionError as e:
        print(f"ops.py {args.command}: {e}", file=err)
        return UNREACHABLE
    except OSError as e:
        print(f"ops.py {args.command}: {e}", file=err)
        return FAILED


if __name__ == "__main__":
    # Fail within seconds when MLflow is down: the workflow retries the step (exit code 5).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    sys.exit(main())
