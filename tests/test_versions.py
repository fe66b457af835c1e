"""versions.yml pins one Kubernetes minor everywhere, and the platform versions agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.k8s_render import versions

REPO = Path(__file__).resolve().parent.parent
GROUP_VARS = REPO / "ansible" / "k8s" / "inventory" / "mycluster" / "group_vars"

# Release facts, from the Kubespray release notes:
# tag -> (commit of the tag, Kubernetes minor it installs).
KUBESPRAY_RELEASES = {
    "v2.31.0": ("1c9add48975060f45396b34d8e022c30d7f80dab", "1.35"),
    "v2.30.0": ("f4ccdb5e72395eaf9f3444056ebd1a6625ddb89a", "1.34"),
}
# kind release -> the Kubernetes minors it publishes node images for.
KIND_MINORS = {"v0.32.0": {"1.33", "1.34", "1.35", "1.36"}}


def minor_of(version: str) -> str:
    """1.35.4 or v1.35.4 -> 1.35."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.\d+", version)
    assert match, f"not a version: {version}"
    return f"{match.group(1)}.{match.group(2)}"


def test_versions_are_pinned_exactly() -> None:
    v = versions()
    for key in (
        "argocd_version",
        "argo_workflows_version",
        "argo_events_version",
        "nvidia_device_plugin_version",
        "kind_version",
        "kubespray_tag",
    ):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", v[key]), f"{key}: {v[key]}"
    for key in ("terraform_version", "openstack_provider_version", "kubernetes_version",
                "jq_version"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", str(v[key])), f"{key}: {v[key]}"
    assert re.fullmatch(r"\d+\.\d+", v["kubernetes_minor"])


def test_kubernetes_version_is_in_the_pinned_minor() -> None:
    v = versions()
    assert minor_of(v["kubernetes_version"]) == v["kubernetes_minor"]


def test_kubespray_tag_installs_the_pinned_minor() -> None:
    v = versions()
    assert v["kubespray_tag"] in KUBESPRAY_RELEASES, (
        f"add {v['kubespray_tag']} to KUBESPRAY_RELEASES"
    )
    commit, minor = KUBESPRAY_RELEASES[v["kubespray_tag"]]
    assert v["kubespray_commit"] == commit
    assert minor == v["kubernetes_minor"]


def test_kubespray_group_vars_use_the_pinned_version() -> None:
    settings = yaml.safe_load((GROUP_VARS / "k8s_cluster" / "k8s-cluster.yml").read_text())
    assert str(settings["kube_version"]) == str(versions()["kubernetes_version"])


def test_kind_node_image_is_pinned_by_digest_in_the_same_minor() -> None:
    v = versions()
    match = re.fullmatch(r"kindest/node:(v[\d.]+)@sha256:[0-9a-f]{64}", v["kind_node_image"])
    assert match, "pin the node image by tag and digest, as kind's release notes ask"
    assert minor_of(match.group(1)) == v["kubernetes_minor"]
    assert v["kubernetes_minor"] in KIND_MINORS[v["kind_version"]]


def test_kubectl_image_matches_the_cluster() -> None:
    v = versions()
    assert v["kubectl_image"] == f"registry.k8s.io/kubectl:v{v['kubernetes_version']}"


def test_minor_check_rejects_a_mismatch() -> None:
    # The helper must be able to tell minors apart, or the tests above prove nothing.
    assert minor_of("v1.34.3") != minor_of("1.35.4")


def test_prose_quotes_no_fixed_training_image_tag() -> None:
    """The training image's tag is its content hash: docs name it, never a version number."""
    docs = [*sorted((REPO / "snippets").glob("*.md")), REPO / "workflows" / "README.md",
            REPO / "workflows" / "build-train-image.yaml", REPO / "train" / "Dockerfile",
            *sorted((REPO / "book").glob("*.md")), REPO / "CONTRIBUTING.md",
            REPO / "ansible" / "README.md"]
    quoted = {(doc.name, tag) for doc in docs
              for tag in re.findall(r"gourmetgram-train:([\w.<>-]+)", doc.read_text())}
    assert quoted, "no document quotes the tag: drop this test or the pattern"
    allowed = {"<tag>", "<tag>-cuda", "current", "buildcache", "buildcache-cuda"}
    assert {tag for _, tag in quoted} <= allowed, quoted


# ---- Argo Events: the EventBus asks for a JetStream version the controller knows ------------

def jetstream_versions(release: str) -> list[str]:
    """The JetStream versions that Argo Events `release` accepts, from the committed config."""
    path = REPO / "tests" / "schemas" / f"argo-events-{release}-controller-config.yaml"
    assert path.exists(), (
        f"no committed controller config for Argo Events {release}: add "
        f"{path.relative_to(REPO)} (its argo-events-controller-config ConfigMap)")
    (config_map,) = [d for d in yaml.safe_load_all(path.read_text())
                     if d and d.get("kind") == "ConfigMap"
                     and d["metadata"]["name"] == "argo-events-controller-config"]
    config = yaml.safe_load(config_map["data"]["controller-config.yaml"])
    return [str(v["version"]) for v in config["eventBus"]["jetstream"]["versions"]]


def event_bus_version(text: str) -> str:
    """The JetStream version the EventBus in text asks for."""
    (bus,) = [d for d in yaml.safe_load_all(text) if d and d.get("kind") == "EventBus"]
    return str(bus["spec"]["jetstream"]["version"])


def test_event_bus_asks_for_a_jetstream_version_the_pinned_release_lists() -> None:
    allowed = jetstream_versions(versions()["argo_events_version"])
    assert "latest" in allowed and len(allowed) > 1  # the copy is a real list
    version = event_bus_version((REPO / "workflows" / "events" / "event-bus.yaml").read_text())
    assert version != "latest", "pin a NATS version: latest moves with each release"
    assert version in allowed, f"JetStream {version} is not one of {allowed}"


def test_jetstream_check_catches_an_unlisted_version_and_a_release_without_a_copy() -> None:
    text = (REPO / "workflows" / "events" / "event-bus.yaml").read_text()
    broken = text.replace('version: "2.10.29"', 'version: "2.10.10"')
    assert event_bus_version(broken) not in jetstream_versions(versions()["argo_events_version"])
    with pytest.raises(AssertionError, match="no committed controller config for Argo Events"):
        jetstream_versions("v1.9.12")


def test_the_controller_config_copy_lost_no_stream_default() -> None:
    """Every default of the JetStream streams has its value (the copy once lost `300s`)."""
    release = versions()["argo_events_version"]
    path = REPO / "tests" / "schemas" / f"argo-events-{release}-controller-config.yaml"
    (config_map,) = [d for d in yaml.safe_load_all(path.read_text())
                     if d and d["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["controller-config.yaml"])
    defaults = yaml.safe_load(config["eventBus"]["jetstream"]["streamConfig"])
    assert [k for k, v in defaults.items() if v is None] == []
    assert defaults["duplicates"] == "300s" and defaults["retention"] == defaults["discard"] == 0
