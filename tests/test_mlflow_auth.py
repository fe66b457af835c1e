"""MLflow's basic-auth app with the chart's settings, on a real local server.

The chart's basic_auth.ini is used as rendered, except that its database_uri points at the
server's own SQLite store instead of Postgres: the users live in the tracking database, as in
the cluster. The MLflow client authenticates the way the workflows do, with
MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.mlflow_server import MlflowServer
from tests.test_helm_charts import mlflow_auth_ini

SEARCH = "/api/2.0/mlflow/registered-models/search"


def status(url: str, user: str | None = None, password: str | None = None) -> int:
    """The HTTP status of a GET, with basic auth when a user is given."""
    request = urllib.request.Request(url)
    if user is not None:
        token = b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def auth_server(root: Path, password: str) -> MlflowServer:
    """A basic-auth server whose user store is its own tracking database."""
    root.mkdir(parents=True, exist_ok=True)
    ini = root / "basic_auth.ini"
    store = f"sqlite:///{root / 'mlflow.db'}"
    text, replaced = re.subn(r"(?m)^database_uri = .*$", f"database_uri = {store}",
                             mlflow_auth_ini())
    assert replaced == 1, text
    ini.write_text(text)
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
           "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(20)}
    return MlflowServer(root, app_name="basic-auth", env=env)


def test_only_a_login_reaches_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = secrets.token_urlsafe(24)
    server = auth_server(tmp_path, password).start()
    try:
        assert status(server.uri + "/health") == 200  # the kubelet's probes need no login
        assert status(server.uri + SEARCH) == 401
        assert status(server.uri + "/") == 401  # the UI too
        assert status(server.uri + SEARCH, "admin", password + "x") == 401
        assert status(server.uri + SEARCH, "admin", password) == 200
        client = MlflowClient(server.uri)
        with pytest.raises(MlflowException, match="401|Unauthorized|credentials"):
            client.create_registered_model("anonymous-model")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client.create_registered_model("GourmetGramFood11Model")
        assert [m.name for m in client.search_registered_models()] == ["GourmetGramFood11Model"]
    finally:
        server.stop()
    # The admin user is a row of the tracking database, beside the models: a new pod on the
    # same database finds it (MLflow creates the admin only when it is missing).
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT username, is_admin FROM users").fetchall() == [("admin", 1)]
        assert db.execute("SELECT name FROM registered_models").fetchall() == [
            ("GourmetGramFood11Model",)]
