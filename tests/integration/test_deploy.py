"""deploy/: the Kubernetes manifests validate offline and are wired as documented; the compose file
parses and names the same env as `tether env`; hot reload survives a ConfigMap `..data` swap."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.integration.harness import github_policy

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose"
KUBERNETES_VERSION = "1.33.0"  # native sidecars (restartPolicy: Always on init containers) are GA since 1.33
API = "https://api.github.com"


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build` gives for our kustomizations: their resources, in order (they use no
    patches or generators, so this is the whole rendering; checked against kubectl when present)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources"}, "render() must learn the new fields"
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((directory / resource).read_text()) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def env_of_tether(config_text: str, tmp_path: Path) -> dict[str, str]:
    """`tether env` for a config as deployed (its secret files exist only in the pod: left out)."""
    config = yaml.safe_load(config_text)
    config.pop("credentials", None)
    path = tmp_path / "tether.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run(
        [sys.executable, "-m", "tether.cli", "env", "--config", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines())


@pytest.mark.parametrize("variant", ["base", "gateway"])
def test_manifests_validate_against_the_kubernetes_schemas(variant):
    docs = render(KUBERNETES / variant)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    if shutil.which("kubectl"):
        out = subprocess.run(
            ["kubectl", "kustomize", str(KUBERNETES / variant)], capture_output=True, text=True, check=True
        )
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        assert sorted(map(key, yaml.safe_load_all(out.stdout))) == sorted(map(key, docs))


def test_a_broken_manifest_is_caught():
    deployment = by_kind(render(KUBERNETES / "base"), "Deployment", "pr-review-agent")
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
    sidecar["restartPolicyy"] = sidecar.pop("restartPolicy")  # a typo: strict schemas reject unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    sidecar["restartPolicy"] = 1  # wrong type
    del sidecar["restartPolicyy"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_sidecar_pod_wiring(tmp_path):
    docs = render(KUBERNETES / "base")
    pod = by_kind(docs, "Deployment", "pr-review-agent")["spec"]["template"]
    spec = pod["spec"]
    (tether,) = spec["initContainers"]
    (agent,) = spec["containers"]
    assert tether["restartPolicy"] == "Always"  # native sidecar
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["tether-ca"] and "emptyDir" in volumes["tether-state"]
    assert volumes["tether-credentials"]["secret"]["secretName"] == "tether-credentials"
    assert volumes["tether-policies"]["configMap"]["name"] == "tether-policies"
    agent_mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert set(agent_mounts) == {"tether-ca"} and agent_mounts["tether-ca"]["readOnly"]  # no key, no ledger
    tether_mounts = {m["name"]: m for m in tether["volumeMounts"]}
    assert "subPath" not in tether_mounts["tether-policies"]  # subPath mounts never see ConfigMap updates

    config_text = by_kind(docs, "ConfigMap", "tether-config")["data"]["tether.yaml"]
    config = yaml.safe_load(config_text)
    assert Path(config["ca_cert_export"]).parent == Path(tether_mounts["tether-ca"]["mountPath"])
    assert Path(config["state_dir"]) == Path(tether_mounts["tether-state"]["mountPath"])
    secret_dir = Path(config["credentials"]["github-bot"]["secret_file"]).parent
    assert secret_dir == Path(tether_mounts["tether-credentials"]["mountPath"])
    assert {"name": "TETHER_CONFIG", "value": "/etc/tether/tether.yaml"} in tether["env"]
    assert agent["envFrom"] == [{"configMapRef": {"name": "agent-env"}}]
    assert by_kind(docs, "ConfigMap", "agent-env")["data"] == env_of_tether(config_text, tmp_path)

    policies = by_kind(docs, "ConfigMap", "tether-policies")["data"]
    for name, text in policies.items():
        (tmp_path / name).write_text(text)
        assert f"/etc/tether/policies/{name}" in config["policy_files"]
    check = subprocess.run(
        [sys.executable, "-m", "tether.cli", "policy", "check", *(str(tmp_path / n) for n in policies)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    policy = by_kind(docs, "NetworkPolicy", "pr-review-agent-egress")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy["ingress"] == [] and set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {53, 443}


def test_gateway_variant_agent_egress_is_only_the_gateway():
    docs = render(KUBERNETES / "gateway")
    agent_pod = by_kind(docs, "Deployment", "pr-review-agent")["spec"]["template"]
    policy = by_kind(docs, "NetworkPolicy", "agents-egress-only-gateway")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= agent_pod["metadata"]["labels"].items()
    gateway_labels = by_kind(docs, "Deployment", "tether-gateway")["spec"]["template"]["metadata"]["labels"]
    first, dns = policy["egress"]
    assert first["to"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert {p["port"] for p in dns["ports"]} == {53}
    assert not any("ipBlock" in peer for rule in policy["egress"] for peer in rule["to"])
    config = yaml.safe_load(by_kind(docs, "ConfigMap", "tether-gateway-config")["data"]["tether.yaml"])
    assert config["gateway"]["agents_file"].startswith("/etc/tether/agents/")


def test_compose_parses_and_names_the_same_env_as_tether_env(tmp_path):
    compose = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    tether, agent = compose["services"]["tether"], compose["services"]["agent"]
    assert agent["network_mode"] == "service:tether"  # localhost wiring, as in the pod
    assert agent["depends_on"]["tether"]["condition"] == "service_healthy"
    assert "tether-ca:/var/run/tether-ca:ro" in agent["volumes"]
    assert not any("tether-state" in v for v in agent["volumes"])
    assert tether["read_only"] is True
    env_file = COMPOSE / agent["env_file"][0]
    agent_env = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    config_text = (COMPOSE / "tether.yaml").read_text()
    assert agent_env == env_of_tether(config_text, tmp_path)
    # The same policy as the Kubernetes example.
    k8s_policies = by_kind(render(KUBERNETES / "base"), "ConfigMap", "tether-policies")["data"]
    assert (COMPOSE / "policies" / "pr-review.yaml").read_text() == k8s_policies["pr-review.yaml"]


def configmap_volume(directory: Path, files: dict[str, str], generation: int) -> None:
    """Write `files` the way the kubelet updates a ConfigMap volume: a new timestamped directory,
    then an atomic rename of the `..data` symlink; the visible names are symlinks through `..data`."""
    data = directory / f"..2026_11_25_00_00_0{generation}.000000000"
    data.mkdir()
    for name, text in files.items():
        (data / name).write_text(text)
    tmp_link = directory / "..data_tmp"
    tmp_link.symlink_to(data.name)
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    tmp_link.replace(directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(directory / old)


def test_hot_reload_survives_a_configmap_symlink_swap(make_tether, tmp_path):
    volume = tmp_path / "policies"
    volume.mkdir()
    configmap_volume(volume, {"policy.yaml": yaml.safe_dump(github_policy())}, 1)
    tether = make_tether(policy_files=[str(volume / "policy.yaml")])
    with tether.session() as s:
        assert s.get(f"{API}/repos/acme/api/issues").status_code == 200
        narrowed = github_policy(id="pol_narrowed")
        narrowed["providers"]["github"]["scopes"] = ["pull_requests:read"]
        configmap_volume(volume, {"policy.yaml": yaml.safe_dump(narrowed)}, 2)
        deadline = time.monotonic() + 20
        while s.get(f"{API}/repos/acme/api/issues").status_code != 403:
            assert time.monotonic() < deadline, "the swapped policy never took effect"
            time.sleep(0.2)
    loaded = [e for e in tether.events() if e["event_type"] == "policy.loaded"]
    assert loaded[-1]["policy_id"] == "pol_narrowed"
