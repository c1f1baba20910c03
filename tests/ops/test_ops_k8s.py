"""ops/k8s: every built-in Kubernetes resource passes ``kubernetes-validate --strict`` (the
OpenAPI schemas of Kubernetes itself, unknown fields rejected), and the manifests agree with each
other and with the worker's stop semantics.

KEDA's ScaledObject and TriggerAuthentication are custom resources: kubernetes-validate ships
no schema for them, and only *warns* ("Couldn't find schema") with exit code 0 — asserted below,
so a silent pass is never mistaken for a validation. They are validated here instead against
a JSON schema written from KEDA v2's CRD (kedacore/keda config/crd/bases/keda.sh_scaledobjects
.yaml and keda.sh_triggerauthentications.yaml: the required fields, their types, and — stricter
than the CRD — no field KEDA does not define) and against the redis scaler's documented
metadata and authentication parameters, plus the facts that make the scaling right: the target
is the worker Deployment, the list is ``<namespace>.<queue>`` from the ConfigMap, and every
secret key KEDA reads exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ops_support import REPO, run_tool, venv_tool

from aethergraph.keys import Keys

K8S = REPO / "ops" / "k8s"
CUSTOM = {"keda.sh/v1alpha1", "kustomize.config.k8s.io/v1beta1"}


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_builtin_resources_pass_kubernetes_validate_strict() -> None:
    files = sorted({p for p, d in documents() if d["apiVersion"] not in CUSTOM})
    done = run_tool(venv_tool("kubernetes-validate"), "--strict", *files)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = [line for line in done.stdout.splitlines() if " passed for resource " in line]
    builtin = [d for _, d in documents() if d["apiVersion"] not in CUSTOM]
    assert len(passed) == len(builtin), done.stdout
    assert "WARN" not in done.stdout + done.stderr


def test_kubernetes_validate_rejects_an_unknown_field(tmp_dir: Path) -> None:
    deployment = find("Deployment", "aethergraph-worker")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 40  # a typo
    broken = tmp_dir / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    done = run_tool(venv_tool("kubernetes-validate"), "--strict", broken)
    assert done.returncode != 0
    assert "terminationGracePeriod" in done.stdout + done.stderr


def test_kubernetes_validate_cannot_check_keda_resources() -> None:
    """Why KEDA's objects get their own checks below."""
    done = run_tool(venv_tool("kubernetes-validate"), "--strict", K8S / "keda-scaledobject.yaml")
    assert done.returncode == 0
    assert "Couldn't find schema for kind ScaledObject" in done.stdout + done.stderr


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_workers_stop_gracefully_and_run_as_the_image_user() -> None:
    config = find("ConfigMap", "aethergraph-worker")["data"]
    pod = find("Deployment", "aethergraph-worker")["spec"]["template"]["spec"]
    grace = float(config["AETHERGRAPH_STOP_GRACE"])
    assert pod["terminationGracePeriodSeconds"] >= grace + 10  # grace, then the handback
    (container,) = pod["containers"]
    assert "lifecycle" not in container  # no preStop: SIGTERM is the worker's graceful stop
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # workers/Dockerfile's useradd
    assert {r["configMapRef"]["name"] for r in container["envFrom"] if "configMapRef" in r} == {
        "aethergraph-worker"
    }
    (secret_ref,) = [r["secretRef"]["name"] for r in container["envFrom"] if "secretRef" in r]
    url = find("Secret", secret_ref)["stringData"]["AETHERGRAPH_BROKER_URL"]
    assert url.startswith("rediss://ag-worker:")
    (metrics,) = container["ports"]
    assert metrics["containerPort"] == int(config["AETHERGRAPH_METRICS_PORT"])
    pdb = find("PodDisruptionBudget", "aethergraph-worker")["spec"]
    assert (
        pdb["selector"]["matchLabels"]
        == find("Deployment", "aethergraph-worker")["spec"]["selector"]["matchLabels"]
    )


def test_flower_service_selects_the_flower_pods() -> None:
    deployment = find("Deployment", "aethergraph-flower")
    service = find("Service", "aethergraph-flower")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["aethergraph", "flower"]
    assert "--port=5555" in container["args"]


# A JSON schema written from KEDA v2's CRDs (see the module docstring); "additionalProperties":
# false where the CRD lists every field, so a misspelt field fails here as it would on apply.
_INT = {"type": "integer"}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {
                                        "enum": [
                                            "TriggerAuthentication",
                                            "ClusterTriggerAuthentication",
                                        ]
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "spec": {
            "type": "object",
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {
                            "parameter": {"type": "string"},
                            "name": {"type": "string"},
                            "key": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
# the redis scaler's metadata and authentication parameters (KEDA docs, scalers/redis-lists)
REDIS_METADATA = {
    "address", "host", "port", "listName", "listLength", "activationListLength",
    "databaseIndex", "enableTLS", "unsafeSsl", "usernameFromEnv", "passwordFromEnv",
}  # fmt: skip
REDIS_AUTH = {"username", "password", "tls", "ca", "cert", "key", "keyPassword"}


def test_keda_objects_match_the_crd_schema() -> None:
    jsonschema.validate(find("ScaledObject", "aethergraph-worker"), SCALED_OBJECT)
    jsonschema.validate(find("TriggerAuthentication", "aethergraph-broker"), TRIGGER_AUTHENTICATION)


def test_the_schema_catches_a_broken_scaled_object() -> None:
    broken = find("ScaledObject", "aethergraph-worker")
    broken["spec"]["triggers"][0]["metadata"]["listLength"] = 4  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT)
    del broken["spec"]["scaleTargetRef"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT)


def test_keda_scales_the_workers_on_their_queue() -> None:
    scaled = find("ScaledObject", "aethergraph-worker")["spec"]
    deployment = find("Deployment", "aethergraph-worker")
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert scaled["minReplicaCount"] >= 1  # clients publish only once a live worker serves
    assert scaled["maxReplicaCount"] >= scaled["minReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert set(metadata) <= REDIS_METADATA, set(metadata) - REDIS_METADATA
    config = find("ConfigMap", "aethergraph-worker")["data"]
    (queue,) = config["WORKER_QUEUES"].split(",")
    assert metadata["listName"] == Keys(config["AETHERGRAPH_NAMESPACE"]).tool_queue(queue)
    assert metadata["listName"] == "ag.aethergraph"
    assert int(metadata["listLength"]) >= 1
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    for ref in auth["secretTargetRef"]:
        assert ref["parameter"] in REDIS_AUTH
        assert ref["key"] in find("Secret", ref["name"])["stringData"]
    params = {ref["parameter"]: ref for ref in auth["secretTargetRef"]}
    user = find("Secret", params["username"]["name"])["stringData"][params["username"]["key"]]
    assert user == "ag-ops"  # reads the queue length; cannot change anything it reads
