"""The Kubernetes manifests (deploy/k8s): rendered by ``kubectl kustomize``, validated against
the Kubernetes schemas, and consistent with the service's settings and the compose stack.

Validation, offline:
- built-in kinds (StatefulSet, Service, PodDisruptionBudget, ConfigMap, Secret, Namespace)
  against the Kubernetes OpenAPI schemas shipped in the ``kubernetes-validate`` package
  (strict: unknown fields fail), for :data:`KUBERNETES_VERSION`;
- the custom resources (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication)
  against the ``openAPIV3Schema`` of their CRDs, read from the Prometheus Operator and KEDA Go
  modules (``go mod download``, the Go module proxy; cached after the first run), made strict
  the same way.
Without kubectl, go or the package these tests fail, naming what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "secured")
KUBERNETES_VERSION = "1.31.0"
#: Go module, version, CRD file in the module, for each custom resource kind.
CRDS = {
    "ServiceMonitor": ("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
                       "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
    "PrometheusRule": ("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
                       "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"),
    "ScaledObject": ("github.com/kedacore/keda/v2", "v2.21.0",
                     "config/crd/bases/keda.sh_scaledobjects.yaml"),
    "TriggerAuthentication": ("github.com/kedacore/keda/v2", "v2.21.0",
                              "config/crd/bases/keda.sh_triggerauthentications.yaml"),
}


@cache
def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: install kubectl (kubectl kustomize renders deploy/k8s)")
    proc = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _of(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(overlay) if d["kind"] == kind]


def _one(overlay: str, kind: str) -> dict[str, Any]:
    (doc,) = _of(overlay, kind)
    return doc


def _settings_env(overlay: str) -> dict[str, str]:
    env: dict[str, str] = _one(overlay, "ConfigMap")["data"]
    return env


@cache
def _crd_schema(kind: str) -> dict[str, Any]:
    module, version, path = CRDS[kind]
    go = shutil.which("go")
    if go is None:
        pytest.fail("go not found: the CRD schemas come from Go modules (apt-get install golang)")
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "GOFLAGS": "-mod=mod"}, cwd=ROOT)
    assert proc.returncode == 0, f"go mod download {module}@{version}:\n{proc.stdout}{proc.stderr}"
    crd = yaml.safe_load((Path(json.loads(proc.stdout)["Dir"]) / path).read_text())
    served = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    schema: dict[str, Any] = _strict(served[0]["schema"]["openAPIV3Schema"])
    return schema


def _validator(kind: str) -> jsonschema.Draft7Validator:
    # Not jsonschema.validate: it checks the schema itself first, and the CRDs' Go regexes
    # (a "(?i)" after "^") are not Python ones; the fields that carry them are unused here.
    return jsonschema.Draft7Validator(_crd_schema(kind))


def _strict(schema: Any) -> Any:
    """Unknown fields fail, as kubectl's strict field validation makes them on apply."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for overlay in OVERLAYS:
        for doc in render(overlay):
            yield overlay, doc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render(overlay: str) -> None:
    kinds = sorted(d["kind"] for d in render(overlay))
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule",
            "ScaledObject", "ConfigMap"} <= set(kinds)


def test_builtin_kinds_validate_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    checked = 0
    for overlay, doc in _documents():
        if doc["kind"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc}")
        checked += 1
    assert checked >= 10


def test_custom_resources_validate_against_their_crds() -> None:
    seen = set()
    for overlay, doc in _documents():
        if doc["kind"] not in CRDS:
            continue
        try:
            _validator(doc["kind"]).validate(doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {list(exc.absolute_path)}")
        seen.add(doc["kind"])
    assert seen == set(CRDS)


def test_the_crd_check_catches_a_misspelt_field() -> None:
    bad = json.loads(json.dumps(_one("local", "ScaledObject")))
    bad["spec"]["maxReplicas"] = bad["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        _validator("ScaledObject").validate(bad)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_in_the_manifests_exists(overlay: str) -> None:
    """A misspelt VIBEWATCH_ variable would be ignored silently: each must name a setting."""
    names = set(_settings_env(overlay))
    container = _one(overlay, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    names |= {e["name"] for e in container.get("env", [])}
    for name in names:
        assert name.startswith("VIBEWATCH_"), name
        model: type[BaseModel] = Settings
        *sections, field = name.removeprefix("VIBEWATCH_").lower().split("__")
        for section in sections:
            annotation = model.model_fields[section].annotation
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
            model = annotation
        assert field in model.model_fields, f"{name}: no setting {'.'.join([*sections, field])}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_instances_are_named_after_their_pods_and_probed(overlay: str) -> None:
    sts = _one(overlay, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["VIBEWATCH_KAFKA__INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.name")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]
    # The root file system is read-only: the checkpoints need their own volume.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    checkpoints = Path(_settings_env(overlay)["VIBEWATCH_STATE__CHECKPOINT_DIR"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert any(checkpoints.is_relative_to(m) for m in mounts), checkpoints
    # The PDB and the Services select the StatefulSet's pods.
    labels = sts["spec"]["template"]["metadata"]["labels"]
    pdb = _one(overlay, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in _of(overlay, "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
    monitor = _one(overlay, "ServiceMonitor")
    service = next(s for s in _of(overlay, "Service") if s["metadata"]["name"] == "vibewatch")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"][
        "labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_lag_scaling_follows_the_settings(overlay: str) -> None:
    env = _settings_env(overlay)
    scaled = _one(overlay, "ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert scaled["spec"]["maxReplicaCount"] == int(env["VIBEWATCH_KAFKA__READINGS_PARTITIONS"])
    assert trigger["metadata"]["consumerGroup"] == env["VIBEWATCH_KAFKA__GROUP_ID"]
    assert trigger["metadata"]["topic"] == env["VIBEWATCH_KAFKA__READINGS_TOPIC"]
    assert trigger["metadata"]["bootstrapServers"] == env["VIBEWATCH_KAFKA__BOOTSTRAP_SERVERS"]


def test_the_secured_overlay_gets_sasl_credentials_and_the_ca_from_secrets() -> None:
    env = _settings_env("secured")
    assert env["VIBEWATCH_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
    sts = _one("secured", "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                   for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_secret == {"VIBEWATCH_KAFKA__SECURITY__SASL_USERNAME": "vibewatch-kafka",
                           "VIBEWATCH_KAFKA__SECURITY__SASL_PASSWORD": "vibewatch-kafka",
                           "VIBEWATCH_API__TOKEN": "vibewatch-api"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(Path(env["VIBEWATCH_KAFKA__SECURITY__SSL_CAFILE"]).parent) in mounts
    secrets = {s["metadata"]["name"] for s in _of("secured", "Secret")}
    assert {"vibewatch-kafka", "vibewatch-api"} <= secrets
    assert _one("secured", "ScaledObject")["spec"]["triggers"][0]["authenticationRef"] == {
        "name": "vibewatch-kafka"}


def test_the_prometheus_rule_is_the_compose_rule_file() -> None:
    proc = subprocess.run(
        [sys.executable, str(K8S / "render_rules.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    compose = yaml.safe_load((ROOT / "deploy/prometheus/rules/vibewatch-alerts.yml").read_text())
    assert _one("secured", "PrometheusRule")["spec"]["groups"] == compose["groups"]
