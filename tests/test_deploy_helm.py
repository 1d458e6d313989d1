"""The Helm chart in deploy/helm/nightshift, checked by real validators (no cluster needed).

- ``helm lint --strict`` (helm v4, built by ``make tools``): the chart's structure and its values
  against ``values.schema.json``;
- ``helm template`` piped to ``nightshift-kubecheck`` (deploy/kubecheck, built by ``make tools``):
  every object decoded strictly into the Kubernetes API types (k8s.io/api) and KEDA's own
  ``keda.sh/v1alpha1`` types, KEDA's trigger, replica and fallback validation, and the kafka
  scaler's required metadata;
- then what the chart must say: a workload per service with /healthz and /readyz probes,
  Prometheus scrape annotations, credentials from a Secret, and the runner scaled on consumer lag.

The tools live in ``.cache/bin`` (or ``$NIGHTSHIFT_TOOLS_DIR``). Missing tools fail these tests;
they are skipped only when ``NIGHTSHIFT_ALLOW_MISSING_TOOLS=1`` says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "nightshift"
SERVICES = {"ingest": "ingest", "registry": "registry", "datastore-writer": "datastore_writer",
            "planner": "planner", "runner": "runner", "alert-publisher": "alert_publisher"}


def _tool(name: str) -> str:
    tools = Path(os.environ.get("NIGHTSHIFT_TOOLS_DIR", ROOT / ".cache" / "bin"))
    path = tools / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name) if name == "helm" else None
    if found:
        return found
    message = f"{name} is not installed in {tools}: run `make tools` (deploy/tools.sh builds it with Go)"
    if os.environ.get("NIGHTSHIFT_ALLOW_MISSING_TOOLS") == "1":
        pytest.skip(message + " [skipped: NIGHTSHIFT_ALLOW_MISSING_TOOLS=1]")
    pytest.fail(message)


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, check=False)


def _template(*sets: str) -> str:
    args = [_tool("helm"), "template", "night", str(CHART)]
    for s in sets:
        args += ["--set", s]
    result = _run(args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_helm_lint_strict_accepts_the_chart() -> None:
    result = _run([_tool("helm"), "lint", "--strict", str(CHART)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("bad", ["keda.lagThreshold=0", "kafka.securityProtocol=SASL_TLS", "httpPort=0",
                                 "services.runner.module=nope"])
def test_helm_lint_rejects_values_the_schema_forbids(bad: str) -> None:
    result = _run([_tool("helm"), "lint", "--strict", str(CHART), "--set", bad])
    assert result.returncode != 0, f"--set {bad} passed lint:\n{result.stdout}"


@pytest.mark.parametrize("sets", [(), ("keda.enabled=false",), ("kafka.securityProtocol=PLAINTEXT",),
                                  ("secret.create=true", "secret.data.kafka-username=u")])
def test_rendered_objects_pass_strict_kubernetes_and_keda_validation(sets: tuple[str, ...]) -> None:
    rendered = _template(*sets)
    result = _run([_tool("nightshift-kubecheck")], stdin=rendered)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:"), result.stdout


def test_kubecheck_rejects_unknown_fields_and_bad_scaled_objects() -> None:
    """The validator can fail: a misspelt probe field, a lagThreshold of 0, a target that does not exist."""
    rendered = _template()
    kubecheck = _tool("nightshift-kubecheck")
    misspelt = rendered.replace("readinessProbe:", "readynessProbe:", 1)
    result = _run([kubecheck], stdin=misspelt)
    assert result.returncode == 1 and "readynessProbe" in result.stderr, result.stderr
    zero_lag = rendered.replace('lagThreshold: "1"', 'lagThreshold: "0"', 1)
    result = _run([kubecheck], stdin=zero_lag)
    assert result.returncode == 1 and "lagThreshold" in result.stderr, result.stderr
    no_target = rendered.replace("name: night-runner\n  minReplicaCount", "name: night-nope\n  minReplicaCount", 1)
    assert no_target != rendered
    result = _run([kubecheck], stdin=no_target)
    assert result.returncode == 1 and "night-nope" in result.stderr, result.stderr
    two = _template("keda.topics={quantum.planned,dataset.write}")
    dup_trigger = two.replace("name: dataset-write-lag", "name: quantum-planned-lag", 1)
    assert dup_trigger != two
    result = _run([kubecheck], stdin=dup_trigger)
    assert result.returncode == 1, "KEDA's ValidateTriggers must refuse two triggers of one name"


def test_every_service_has_a_workload_with_probes_scrape_annotations_and_secret_credentials() -> None:
    objs = _objects(_template())
    workloads = {o["metadata"]["labels"]["app.kubernetes.io/name"]: o for o in objs
                 if o["kind"] in ("Deployment", "StatefulSet")}
    assert set(workloads) == set(SERVICES)
    for name, module in SERVICES.items():
        w = workloads[name]
        assert w["kind"] == ("StatefulSet" if name == "alert-publisher" else "Deployment")
        pod = w["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"nightshift_services.{module}"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
        env = _env(container)
        assert env["NIGHTSHIFT_HTTP_HOST"]["value"] == "0.0.0.0"  # probes come from the kubelet, not loopback
        for secret in ("NIGHTSHIFT_KAFKA_SASL_USERNAME", "NIGHTSHIFT_KAFKA_SASL_PASSWORD", "NIGHTSHIFT_APDB_DSN",
                       "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"):
            assert "value" not in env[secret], f"{name}: {secret} must come from the Secret"
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "nightshift-credentials"
        assert env["NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        # longer than the services' 30 s drain, so SIGTERM drains before SIGKILL
        assert pod["spec"]["terminationGracePeriodSeconds"] > 30
    registry = workloads["registry"]["spec"]["template"]["spec"]["containers"][0]
    assert _env(registry)["NIGHTSHIFT_API_HOST"]["value"] == "0.0.0.0"  # the remote butler's read API
    assert {"name": "api", "containerPort": 8081, "protocol": "TCP"} in registry["ports"]
    (service,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "night-registry"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "api"}
    publisher = _env(workloads["alert-publisher"]["spec"]["template"]["spec"]["containers"][0])
    assert publisher["NIGHTSHIFT_TRANSACTIONAL_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_runner_is_scaled_by_keda_on_the_lag_of_its_consumer_group() -> None:
    objs = _objects(_template())
    (so,) = [o for o in objs if o["kind"] == "ScaledObject"]
    runner = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "night-runner")
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "night-runner"}
    assert "replicas" not in runner["spec"], "KEDA owns the runner's replica count"
    triggers = so["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    # raw.ingested is read by every runner without a group: no group offsets, so no lag trigger on it
    assert {t["metadata"]["topic"] for t in triggers} == {"quantum.planned"}
    for t in triggers:
        assert t["metadata"]["consumerGroup"] == "nightshift-runner"
        assert int(t["metadata"]["lagThreshold"]) >= 1
        assert t["metadata"]["sasl"] == "scram_sha512" and t["metadata"]["tls"] == "enable"
        assert t["authenticationRef"]["name"] == "night-runner-kafka"
    (auth,) = [o for o in objs if o["kind"] == "TriggerAuthentication"]
    assert {r["parameter"] for r in auth["spec"]["secretTargetRef"]} == {"username", "password"}
    without = _objects(_template("keda.enabled=false"))
    assert not [o for o in without if o["kind"] in ("ScaledObject", "TriggerAuthentication")]
    runner = next(o for o in without if o["kind"] == "Deployment" and o["metadata"]["name"] == "night-runner")
    assert runner["spec"]["replicas"] == 4


def test_chart_and_compose_cover_the_same_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(SERVICES) <= set(compose)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["services"]) | {"alert-publisher"} == set(SERVICES)
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["services"]["additionalProperties"]["properties"]["module"]["enum"]) == \
        set(SERVICES.values()) - {"alert_publisher"}
