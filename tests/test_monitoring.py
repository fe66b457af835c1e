"""The monitoring and the live route agree with the app chart, versions.yml and ansible.

The scrape job and the dashboard queries run in a real Prometheus in test_canary_gate.py;
here the rendered charts are checked against each other.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.k8s_render import ENVIRONMENTS, K8S, REPO, case, find, load_yaml, render, versions


def platform(flavour: str = "cloud") -> list[dict[str, Any]]:
    """The rendered platform chart."""
    return render(case("platform", flavour))


def scrape_job() -> dict[str, Any]:
    """The one scrape job of the rendered Prometheus configuration."""
    config_map = find(platform(), "ConfigMap", "prometheus-config")
    (job,) = yaml.safe_load(config_map["data"]["prometheus.yml"])["scrape_configs"]
    return job


def relabel(job: dict[str, Any], meta: dict[str, str]) -> dict[str, str] | None:
    """Apply the job's keep/replace rules to discovered labels, as Prometheus does."""
    labels = dict(meta)
    for rule in job["relabel_configs"]:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not match:
                return None
        elif match:
            replacement = rule.get("replacement", "$1")
            # Prometheus writes $1, Python's expand() wants \1.
            labels[rule["target_label"]] = match.expand(re.sub(r"\$(\d+)", r"\\\1", replacement))
    return {k: v for k, v in labels.items() if not k.startswith("__")}


def pod_meta(env: str) -> dict[str, str]:
    """The discovery labels Kubernetes gives the app pod of an environment's render."""
    objects = render(case(env, "cloud"))
    pod = find(objects, "Deployment", "gourmetgram-app")["spec"]["template"]
    meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v
            for k, v in pod["metadata"]["labels"].items()}
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]
    meta |= {"__meta_kubernetes_namespace": objects[0]["metadata"]["namespace"],
             "__meta_kubernetes_pod_name": "gourmetgram-app-abc",
             "__meta_kubernetes_pod_phase": "Running",
             "__meta_kubernetes_pod_container_port_name": port["name"]}
    return meta


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_app_pod_is_scraped_with_environment_and_model_version(env: str) -> None:
    """The pod labels the app chart sets become environment and version (image tag -> v)."""
    labels = relabel(scrape_job(), pod_meta(env))
    assert labels == {"environment": env, "version": "1",
                      "namespace": f"gourmetgram-{env}", "pod": "gourmetgram-app-abc"}


def test_other_pods_and_ports_are_not_scraped() -> None:
    job = scrape_job()
    meta = pod_meta("canary")
    assert relabel(job, meta | {"__meta_kubernetes_pod_container_port_name": "metrics"}) is None
    assert relabel(job, meta | {"__meta_kubernetes_pod_label_app_kubernetes_io_name":
                                "mlflow"}) is None
    assert relabel(job, meta | {"__meta_kubernetes_pod_phase": "Pending"}) is None


def test_prometheus_discovers_the_app_namespaces_with_read_only_access() -> None:
    (sd,) = scrape_job()["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [f"gourmetgram-{e}" for e in ENVIRONMENTS]
    role = find(platform(), "ClusterRole", "gourmetgram-prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                              "verbs": ["get", "list", "watch"]}]


# The keys Prometheus 3 reads under `storage:` in its configuration file (config/config.go
# of prometheus/prometheus, read at commit 6dc464f2: StorageConfig `tsdb`, `exemplars`;
# TSDBConfig `out_of_order_time_window`, `retention`; TSDBRetentionConfig `time`
# (model.Duration) and `size` (units.Base2Bytes, where MB means MiB)). Prometheus 3.13
# deprecates the --storage.tsdb.retention.* flags in favour of this section. Debian's
# Prometheus 2.42, which the server tests run, predates it: those tests load
# files/prometheus.yml, the scrape part, without it.
STORAGE_KEYS: dict[str, Any] = {
    "tsdb": {"out_of_order_time_window": None, "retention": {"time": None, "size": None}},
    "exemplars": {"max_exemplars": None}}
DURATION = re.compile(r"(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?")  # ParseDuration
BASE2_BYTES = re.compile(r"\d+(B|[KMGTPE]i?B)")


def unknown_keys(section: dict[str, Any], known: dict[str, Any], where: str = "") -> list[str]:
    """Keys of a configuration section that the known key tree does not have."""
    problems = []
    for key, value in section.items():
        if key not in known:
            problems.append(f"{where}{key}")
        elif isinstance(known[key], dict):
            problems += unknown_keys(value or {}, known[key], f"{where}{key}.")
    return problems


def prometheus_config(flavour: str = "cloud") -> dict[str, Any]:
    """The rendered Prometheus configuration file."""
    config_map = find(platform(flavour), "ConfigMap", "prometheus-config")
    return yaml.safe_load(config_map["data"]["prometheus.yml"])


@pytest.mark.parametrize("flavour", ["cloud", "kind"])
def test_prometheus_retention_is_in_the_config_file_and_fits_its_volume(flavour: str) -> None:
    objects = platform(flavour)
    (container,) = find(objects, "Deployment", "prometheus")["spec"]["template"]["spec"][
        "containers"]
    assert not [a for a in container["args"] if "retention" in a]  # deprecated in 3.13
    storage = prometheus_config(flavour)["storage"]
    assert unknown_keys(storage, STORAGE_KEYS) == []
    retention = storage["tsdb"]["retention"]
    assert DURATION.fullmatch(retention["time"]) and retention["time"]
    assert BASE2_BYTES.fullmatch(retention["size"]), retention["size"]
    values = load_yaml(K8S / "platform" / f"values{'-kind' if flavour == 'kind' else ''}.yaml")
    assert retention == {"time": values["prometheus"]["retention"],
                         "size": values["prometheus"]["retentionSize"]}
    claim = find(objects, "PersistentVolumeClaim", "prometheus-data")
    size_mb = int(retention["size"].removesuffix("MB"))
    volume_gi = int(claim["spec"]["resources"]["requests"]["storage"].removesuffix("Gi"))
    assert size_mb < volume_gi * 1024 * 0.8  # room for the write-ahead log
    if flavour == "cloud":
        assert retention["time"] == "7d"
    # The scrape part is the file the server tests run, unchanged.
    scrape = yaml.safe_load((K8S / "platform" / "files" / "prometheus.yml").read_text())
    assert {k: v for k, v in prometheus_config(flavour).items() if k != "storage"} == scrape


def test_storage_key_check_catches_a_misspelled_key() -> None:
    assert unknown_keys({"tsdb": {"retension": {"time": "7d"}}}, STORAGE_KEYS) == [
        "tsdb.retension"]
    assert unknown_keys({"tsdb": {"retention": {"size": "1GB", "bytes": 1}}}, STORAGE_KEYS) == [
        "tsdb.retention.bytes"]
    assert not BASE2_BYTES.fullmatch("1.5GB") and not DURATION.fullmatch("7 days")


def test_monitoring_and_route_images_are_the_pinned_ones() -> None:
    pins = versions()
    values = load_yaml(K8S / "platform" / "values.yaml")
    assert values["prometheus"]["image"] == pins["prometheus_image"]
    assert values["grafana"]["image"] == pins["grafana_image"]
    assert values["live"]["image"] == pins["traefik_image"]
    for name, pin in (("prometheus", "prometheus_image"), ("grafana", "grafana_image"),
                      ("traefik", "traefik_image")):
        (container,) = find(platform(), "Deployment", name)["spec"]["template"]["spec"][
            "containers"]
        assert container["image"] == pins[pin]
    assert re.fullmatch(r"v1\.\d+\.\d+", pins["gateway_api_version"])


def test_grafana_is_provisioned_with_the_data_source_and_the_dashboard() -> None:
    objects = platform()
    provisioning = find(objects, "ConfigMap", "grafana-provisioning")["data"]
    (source,) = yaml.safe_load(provisioning["datasources.yaml"])["datasources"]
    assert source["url"] == "http://prometheus.gourmetgram-platform.svc.cluster.local:9090"
    board = json.loads(find(objects, "ConfigMap", "grafana-dashboards")["data"][
        "gourmetgram.json"])
    assert board == json.loads((K8S / "platform" / "files" / "gourmetgram-dashboard.json")
                               .read_text())
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    titles = " ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("request rate", "error ratio", "p50", "p95", "per class"):
        assert topic in titles
    (provider,) = yaml.safe_load(provisioning["dashboards.yaml"])["providers"]
    deployment = find(objects, "Deployment", "grafana")["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in deployment["containers"][0]["volumeMounts"]}
    assert provider["options"]["path"] in mounts


def test_grafana_login_is_generated_by_the_playbook() -> None:
    (container,) = find(platform(), "Deployment", "grafana")["spec"]["template"]["spec"][
        "containers"]
    env = {e["name"]: e for e in container["env"]}
    ref = env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "grafana-credentials", "key": "password"}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    playbook = yaml.safe_load((REPO / "ansible" / "argocd" / "argocd_add_platform.yml")
                              .read_text())
    secrets = [item for play in playbook for task in play.get("tasks", [])
               for item in task.get("loop", []) if isinstance(item, dict) and "secret_keys" in item]
    assert {"name": "grafana-credentials", "secret_keys": [{"key": "password", "length": 24}]} \
        in secrets


# ---- the live route ------------------------------------------------------------------------


def route(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The live HTTPRoute."""
    return find(objects, "HTTPRoute", "gourmetgram-live")


def test_route_splits_ninety_ten_between_the_app_services() -> None:
    objects = platform()
    (rule,) = route(objects)["spec"]["rules"]
    backends = {b["namespace"]: b for b in rule["backendRefs"]}
    assert {ns: b["weight"] for ns, b in backends.items()} == {
        "gourmetgram-production": 90, "gourmetgram-canary": 10}
    for env in ("production", "canary"):
        service = find(render(case(env, "cloud")), "Service", "gourmetgram-app")
        backend = backends[f"gourmetgram-{env}"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"] == service["spec"]["ports"][0]["port"]


def test_route_share_is_a_value() -> None:
    objects = render(case("platform", "cloud"), {"live": {"canaryWeight": 25}})
    (rule,) = route(objects)["spec"]["rules"]
    assert sorted(b["weight"] for b in rule["backendRefs"]) == [25, 75]
    with pytest.raises(Exception, match="canaryWeight must be between 0 and 100"):
        render(case("platform", "cloud"), {"live": {"canaryWeight": 150}})


def test_each_backend_namespace_grants_the_route() -> None:
    granted = {}
    for env in ENVIRONMENTS:
        for obj in render(case(env, "cloud")):
            if obj["kind"] == "ReferenceGrant":
                granted[obj["metadata"]["namespace"]] = obj["spec"]
    assert set(granted) == {"gourmetgram-canary", "gourmetgram-production"}
    for spec in granted.values():
        assert spec["from"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                 "namespace": "gourmetgram-platform"}]
        assert spec["to"] == [{"group": "", "kind": "Service", "name": "gourmetgram-app"}]


def test_gateway_listener_is_an_entry_point_of_traefik_on_port_80() -> None:
    objects = platform()
    gateway = find(objects, "Gateway", "gourmetgram-live")
    (listener,) = gateway["spec"]["listeners"]
    (parent,) = route(objects)["spec"]["parentRefs"]
    assert (parent["name"], parent["sectionName"]) == ("gourmetgram-live", listener["name"])
    assert gateway["spec"]["gatewayClassName"] == find(objects, "GatewayClass", "traefik")[
        "metadata"]["name"]
    (container,) = find(objects, "Deployment", "traefik")["spec"]["template"]["spec"][
        "containers"]
    assert f"--entryPoints.web.address=:{listener['port']}" in container["args"]
    assert "--providers.kubernetesgateway=true" in container["args"]
    service = find(objects, "Service", "traefik")
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "web")]
    assert service["spec"]["externalIPs"]
