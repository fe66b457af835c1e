"""ops.py's command line: answers on stdout, one-line errors on stderr, documented exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ops
import pytest
from mlflow.tracking import MlflowClient

from app.localserver import free_port
from tests.mlflow_server import MlflowServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def registered(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered model of its own with one version (no weights behind it); its name."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    name = f"OpsCliTest{free_port()}"
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    client.create_registered_model(name)
    client.create_model_version(name, source=f"s3://bucket/{name}/1")
    return name


def call(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """ops.main(args) in this process: exit code, stdout, stderr."""
    code = ops.main(list(args))
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_answers_go_to_stdout_alone(registered: str, capsys: pytest.CaptureFixture) -> None:
    assert call(capsys, "--model", registered, "record-deploy", "--env", "canary",
                "--version", "1") == (ops.OK, "1", "")
    assert call(capsys, "--model", registered, "current", "--env", "canary") == (ops.OK, "1", "")
    assert call(capsys, "--model", registered, "history", "--env", "canary") == (ops.OK, "1", "")


def test_refusals_exit_1_with_one_line(registered: str, capsys: pytest.CaptureFixture) -> None:
    code, out, err = call(capsys, "--model", registered, "current", "--env", "production")
    assert (code, out) == (ops.REFUSED, "")
    assert err == (f"ops.py current: refused: no version of {registered} has the alias "
                   "'production' yet")
    code, _, err = call(capsys, "--model", registered, "download", "--version", "4",
                        "--out", "/tmp/unused")
    assert code == ops.REFUSED and f"{registered} has no version 4" in err
    code, _, err = call(capsys, "--model", registered, "download", "--alias", "canary",
                        "--out", "/tmp/unused")
    assert code == ops.REFUSED and "has alias 'canary'" in err


def test_an_unreachable_mlflow_exits_5(monkeypatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    code, _, err = call(capsys, "current", "--env", "staging")
    assert code == ops.UNREACHABLE and err.startswith("ops.py current: MLflow: ")


@pytest.mark.parametrize("args", [
    ["approve", "--version", "three"],
    ["approve", "--version", "0"],
    ["check-promotion", "--source", "staging", "--target", "qa", "--version", "1"],
    ["download", "--version", "1", "--alias", "canary", "--out", "x"],
    ["launch"],
])
def test_bad_command_lines_exit_2(args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        ops.main(args)
    assert exit_.value.code == ops.USAGE
    assert "usage: ops.py" in capsys.readouterr().err


def test_help_documents_every_exit_code() -> None:
    result = subprocess.run([sys.executable, str(REPO / "train" / "ops.py"), "--help"],
                            capture_output=True, text=True, cwd=REPO / "train")
    assert result.returncode == 0, result.stderr
    for code in range(6):
        assert f"\n  {code}  " in result.stdout
    for command in ("download", "approve", "check-promotion", "record-deploy", "deploy",
                    "rollback-target", "record-rollback", "current", "set-alias"):
        assert command in result.stdout


def test_download_reads_the_local_store_without_a_server(tmp_path: Path) -> None:
    """`make serve` on a fresh machine: no MLFLOW_TRACKING_URI, the registry in mlruns/."""
    import os

    store = tmp_path / "mlruns"
    script = (
        "import sys, config, mlflow, registry\n"
        "from model import build_model, save_for_serving\n"
        "registry.use_experiment(config.tracking_uri())\n"
        "model = build_model('normal')\n"
        "onnx_path = save_for_serving(model, sys.argv[1], 'candidate')\n"
        "with mlflow.start_run():\n"
        "    info = registry.log_model(model, onnx_path)\n"
        "print(registry.register(info.model_uri, {}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(GOURMETGRAM_MLRUNS=str(store), PYTHONPATH=f"{REPO}:{REPO / 'train'}")
    work = tmp_path / "elsewhere"  # mlflow's own default store would land in the cwd
    work.mkdir()
    made = subprocess.run([sys.executable, "-c", script, str(tmp_path / "made")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    version = made.stdout.split()[-1]
    out = tmp_path / "serve"
    done = subprocess.run(
        [sys.executable, str(REPO / "train" / "ops.py"), "download", "--alias", "development",
         "--out", str(out)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == version
    made_dir = tmp_path / "made"
    for name in ("model.onnx", "model.pth"):  # the very files training wrote
        assert (out / name).read_bytes() == (made_dir / name).read_bytes(), name
    assert (out / "versions.txt").read_text().strip() == version
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.pth", "versions.txt"]
    assert list(work.iterdir()) == []
