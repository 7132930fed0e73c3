#!/usr/bin/env python3
"""Checks the deployment artefacts: renders the Helm chart, validates it and deploy/kubernetes/ against Kubernetes schemas, and reads deploy/Dockerfile.

Run with the test venv's Python (it has helm-python-sdk and kubernetes-validate):

    .test-tools/venv/bin/python tests/deploy/check_manifests.py

Prints every check and exits non-zero, naming each failure, when any fails.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "temporal-codec-proxy"
MANIFESTS = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
BUILD_SCRIPT = REPO / "scripts" / "build-release.sh"
BUILD_COMMAND = "cargo build --release --locked --bin temporal-codec-proxy"

# A fixed version, so a new kubernetes-validate release cannot change what passes.
KUBERNETES_VERSION = "1.35.0"
# Custom resources the package has no schema for; everything else must validate.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# Every setting the proxy reads from its environment; a typo in a template would otherwise be
# silently ignored by the proxy.
PROXY_ENV = {
    "TEMPORAL_CODEC_PROXY_LISTEN",
    "TEMPORAL_CODEC_PROXY_UPSTREAM",
    "TEMPORAL_CODEC_PROXY_UPSTREAM_CONNECTIONS",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_CODEC_PROXY_KEYS",
    "AWS_KMS_CMK_ARN",
    "TEMPORAL_CODEC_PROXY_KMS_KEY_TEMPLATE",
    "TEMPORAL_CODEC_PROXY_KMS_ENDPOINT",
    "TEMPORAL_CODEC_PROXY_KMS_REGION",
    "TEMPORAL_CODEC_PROXY_CODEC_LISTEN",
    "SSL_PEM",
    "SSL_KEY",
    "TEMPORAL_CODEC_PROXY_CODEC_AUTH",
    "TEMPORAL_CODEC_PROXY_CODEC_JWKS_URL",
    "TEMPORAL_CODEC_PROXY_CODEC_JWT_AUDIENCES",
    "TEMPORAL_CODEC_PROXY_CODEC_JWT_ISSUER",
    "TEMPORAL_CODEC_PROXY_CODEC_ROLES_FROM",
    "TEMPORAL_CODEC_PROXY_CODEC_TOKEN_FROM",
    "TEMPORAL_CODEC_PROXY_CODEC_CORS_ORIGINS",
    "TEMPORAL_CODEC_PROXY_CODEC_ALLOW_UNAUTHENTICATED_DECRYPTION",
    "TEMPORAL_API_KEY",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_CODEC_PROXY_UPSTREAM_TLS",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_CODEC_PROXY_LISTEN_TLS_CERT",
    "TEMPORAL_CODEC_PROXY_LISTEN_TLS_KEY",
    "TEMPORAL_CODEC_PROXY_LISTEN_CLIENT_CA",
    "TEMPORAL_CODEC_PROXY_LISTEN_AUTH",
    "TEMPORAL_CODEC_PROXY_LISTEN_JWKS_URL",
    "TEMPORAL_CODEC_PROXY_LISTEN_JWT_AUDIENCES",
    "TEMPORAL_CODEC_PROXY_LISTEN_JWT_ISSUER",
    "TEMPORAL_CODEC_PROXY_LISTEN_TOKEN_FROM",
    "TEMPORAL_CODEC_PROXY_LISTEN_ALLOW_UNAUTHENTICATED_PLAINTEXT",
    "TEMPORAL_CODEC_PROXY_ADMIN_LISTEN",
    "TEMPORAL_CODEC_PROXY_SHUTDOWN_GRACE",
    "TEMPORAL_CODEC_PROXY_MAX_BUFFERED_BYTES",
    "TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES",
    "RUST_LOG",
    "TEMPORAL_CODEC_PROXY_LOG_FORMAT",
}
# Settings whose value is a file the container must have mounted.
PATH_ENV = {
    "SSL_PEM",
    "SSL_KEY",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_CODEC_PROXY_LISTEN_TLS_CERT",
    "TEMPORAL_CODEC_PROXY_LISTEN_TLS_KEY",
    "TEMPORAL_CODEC_PROXY_LISTEN_CLIENT_CA",
}

# Distinctive strings standing in for secret material in the render cases; none may leave a Secret.
INLINE_KEY_CURRENT = "base64:q2V5LW1hdGVyaWFsLWN1cnJlbnQtZG8tbm90LWxlYWs="
INLINE_KEY_OLD = "hex:6b65792d6d6174657269616c2d6f6c642d646f2d6e6f742d6c65616b2d2d2d"


class Checks:
    """Collects results so one run reports every failure, not just the first."""

    def __init__(self) -> None:
        self.passed = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            message = f"{what}: {detail}" if detail else what
            self.failures.append(message)
            print(f"  FAIL  {message}")
        return ok


def load_documents(text: str, source: str) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    for doc in documents:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ValueError(f"{source}: a YAML document is not a Kubernetes object: {doc!r:.200}")
    return documents


def render(values: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Renders the chart like `helm template orders … --namespace payments`; returns objects and NOTES.txt."""
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="orders", namespace="payments")
    documents: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        documents.extend(load_documents(text, path))
    return documents, notes


def describe(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"


def validate_schema(checks: Checks, doc: dict[str, Any], source: str) -> None:
    what = f"{source}: {describe(doc)} is valid Kubernetes {KUBERNETES_VERSION} (strict)"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        location = "/".join(str(p) for p in error.path)
        checks.check(False, what, f"{location}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            print(f"  skip  {source}: {describe(doc)} is a custom resource ({doc['apiVersion']}) that "
                  "kubernetes-validate has no schema for; only this script's own checks cover it")
        else:
            checks.check(False, what, error.message)
    else:
        checks.check(True, what)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def proxy_container(pod: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The proxy container, and whether it runs as a native sidecar."""
    for container in pod.get("initContainers", []):
        if container["name"] == "proxy":
            return container, container.get("restartPolicy") == "Always"
    for container in pod.get("containers", []):
        if container["name"] == "proxy":
            return container, False
    return None, False


def env_map(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def env_value(container: dict[str, Any], name: str) -> str | None:
    entry = env_map(container).get(name)
    return None if entry is None else entry.get("value")


def duration_seconds(text: str) -> int | None:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", text)
    if not match or not text:
        return None
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def check_workload(checks: Checks, workload: dict[str, Any], source: str, secrets: list[str]) -> None:
    """Hardening, probes, settings and mounts every Deployment with the proxy must have."""
    name = f"{source}: {describe(workload)}"
    pod = pod_spec(workload)
    pod_security = pod.get("securityContext", {})
    proxy, native = proxy_container(pod)
    if not checks.check(proxy is not None, f"{name} has a proxy container"):
        return

    for container in all_containers(pod):
        label = f"{name} container {container['name']}"
        security = container.get("securityContext", {})
        non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
        uid = security.get("runAsUser", pod_security.get("runAsUser"))
        checks.check(non_root and uid != 0, f"{label} runs as non-root",
                     f"runAsNonRoot={non_root}, runAsUser={uid}")
        checks.check(security.get("readOnlyRootFilesystem") is True,
                     f"{label} has a read-only root filesystem")
        checks.check(security.get("allowPrivilegeEscalation") is False,
                     f"{label} forbids privilege escalation")
        checks.check("ALL" in security.get("capabilities", {}).get("drop", []),
                     f"{label} drops ALL capabilities")
        seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
        checks.check(seccomp.get("type") == "RuntimeDefault", f"{label} uses the RuntimeDefault seccomp profile")
        for entry in container.get("env", []):
            if "value" in entry:
                leaked = [s for s in secrets if s in str(entry["value"])]
                checks.check(not leaked, f"{label} env {entry['name']} holds no secret value",
                             "secret material in a plain env value")
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"] for v in pod.get("volumes", [])}
        checks.check(mounted <= volumes, f"{label} mounts only volumes the pod defines",
                     f"undefined: {sorted(mounted - volumes)}")

    ports = {p["name"]: p["containerPort"] for p in proxy.get("ports", [])}
    admin_listen = env_value(proxy, "TEMPORAL_CODEC_PROXY_ADMIN_LISTEN") or ""
    checks.check(admin_listen == f"0.0.0.0:{ports.get('admin')}",
                 f"{name} admin listener is on all addresses at the admin port",
                 f"TEMPORAL_CODEC_PROXY_ADMIN_LISTEN={admin_listen!r}, admin port {ports.get('admin')}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = proxy.get(probe, {}).get("httpGet", {})
        checks.check(get.get("path") == path and get.get("port") in ("admin", ports.get("admin")),
                     f"{name} proxy {probe} is GET {path} on the admin port", f"got {get}")
    if native:
        get = proxy.get("startupProbe", {}).get("httpGet", {})
        checks.check(get.get("path") == "/healthz" and get.get("port") in ("admin", ports.get("admin")),
                     f"{name} native sidecar has a startup probe on /healthz, so the worker starts after it",
                     f"got {get}")

    env = env_map(proxy)
    unknown = sorted(set(env) - PROXY_ENV)
    checks.check(not unknown, f"{name} proxy sets only settings the proxy reads", f"unknown: {unknown}")
    if "TEMPORAL_API_KEY" in env:
        ref = env["TEMPORAL_API_KEY"].get("valueFrom", {}).get("secretKeyRef")
        checks.check(ref is not None and "value" not in env["TEMPORAL_API_KEY"],
                     f"{name} TEMPORAL_API_KEY comes from a secretKeyRef")
    keys = env_value(proxy, "TEMPORAL_CODEC_PROXY_KEYS")
    if keys is not None:
        sources = [spec.split("=", 1)[1] if "=" in spec else spec for spec in keys.split(",")]
        checks.check(all(s.startswith("file:") for s in sources),
                     f"{name} keys are read from mounted files", f"sources: {sources}")
    mount_paths = [m["mountPath"].rstrip("/") + "/" for m in proxy.get("volumeMounts", [])]
    file_paths = [(var, env_value(proxy, var)) for var in PATH_ENV if env_value(proxy, var)]
    if keys:
        file_paths += [("TEMPORAL_CODEC_PROXY_KEYS", spec.split("=file:", 1)[1])
                       for spec in keys.split(",") if "=file:" in spec]
    for var, path in file_paths:
        checks.check(any(path.startswith(m) for m in mount_paths),
                     f"{name} {var} file {path} is on a mounted volume")

    grace = duration_seconds(env_value(proxy, "TEMPORAL_CODEC_PROXY_SHUTDOWN_GRACE") or "30s")
    period = pod.get("terminationGracePeriodSeconds", 30)
    checks.check(grace is not None and period > grace,
                 f"{name} terminationGracePeriodSeconds ({period}) exceeds the shutdown grace ({grace}s)")


def check_gateway_listener(checks: Checks, workload: dict[str, Any], source: str) -> None:
    name = f"{source}: {describe(workload)}"
    proxy, _ = proxy_container(pod_spec(workload))
    assert proxy is not None
    listen = env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN") or ""
    checks.check(listen.startswith("0.0.0.0:"), f"{name} gateway listens on all addresses", listen)
    checks.check(bool(env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN_TLS_CERT"))
                 and bool(env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN_TLS_KEY")),
                 f"{name} gateway listener has TLS")
    authenticated = (env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN_AUTH") == "jwt"
                     or bool(env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN_CLIENT_CA")))
    checks.check(authenticated, f"{name} gateway listener authenticates callers (JWT or client CA)")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_gateway_objects(checks: Checks, documents: list[dict[str, Any]], source: str) -> None:
    """The Service, HPA and PDB must point at the gateway Deployment and its ports."""
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    proxy, _ = proxy_container(pod_spec(deployment))
    assert proxy is not None
    container_ports = {p["name"] for p in proxy.get("ports", [])}
    service = next((d for d in documents if d["kind"] == "Service"), None)
    if checks.check(service is not None, f"{source}: gateway has a Service"):
        assert service is not None
        checks.check(selects(service["spec"].get("selector", {}), pod_labels),
                     f"{source}: Service selects the gateway pods")
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        for port_name, number in (("grpc", 7233), ("codec", 8081), ("admin", 9090)):
            checks.check(ports.get(port_name) == number, f"{source}: Service port {port_name} is {number}",
                         f"ports: {ports}")
        targets = {p.get("targetPort") for p in service["spec"]["ports"]}
        checks.check(all(t in container_ports for t in targets if isinstance(t, str)),
                     f"{source}: Service targets named container ports")
    hpa = next((d for d in documents if d["kind"] == "HorizontalPodAutoscaler"), None)
    if checks.check(hpa is not None, f"{source}: gateway has a HorizontalPodAutoscaler"):
        assert hpa is not None
        target = hpa["spec"]["scaleTargetRef"]
        checks.check(target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"],
                     f"{source}: HPA scales the gateway Deployment")
        metrics = hpa["spec"].get("metrics", [])
        checks.check(any(m.get("resource", {}).get("name") == "cpu" for m in metrics),
                     f"{source}: HPA scales on CPU")
        requests = proxy.get("resources", {}).get("requests", {})
        checks.check("cpu" in requests, f"{source}: proxy requests CPU, which HPA utilisation is relative to")
    pdb = next((d for d in documents if d["kind"] == "PodDisruptionBudget"), None)
    if checks.check(pdb is not None, f"{source}: gateway has a PodDisruptionBudget"):
        assert pdb is not None
        checks.check(selects(pdb["spec"]["selector"]["matchLabels"], pod_labels),
                     f"{source}: PDB selects the gateway pods")


def check_service_monitor(checks: Checks, documents: list[dict[str, Any]], source: str) -> None:
    monitor = next(d for d in documents if d["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in documents if d["kind"] == "Service" and selects(selector, d["metadata"]["labels"])]
    checks.check(len(services) == 1, f"{source}: ServiceMonitor selects exactly one Service",
                 f"selects {[describe(s) for s in services]}")
    endpoint_ports = {e.get("port") for e in monitor["spec"]["endpoints"]}
    paths = {e.get("path") for e in monitor["spec"]["endpoints"]}
    if services:
        names = {p["name"] for p in services[0]["spec"]["ports"]}
        checks.check(endpoint_ports <= names and paths == {"/metrics"},
                     f"{source}: ServiceMonitor scrapes /metrics on the Service's admin port",
                     f"ports {endpoint_ports}, paths {paths}")


class Case:
    """One set of chart values and what its render must contain."""

    def __init__(self, name: str, values: dict[str, Any], kinds: set[str], secrets: list[str],
                 extra: Callable[[Checks, list[dict[str, Any]], str, str], None] | None = None) -> None:
        self.name = name
        self.values = values
        self.kinds = kinds
        self.secrets = secrets
        self.extra = extra


def sidecar_defaults(checks: Checks, documents: list[dict[str, Any]], source: str, notes: str) -> None:
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = pod_spec(deployment)
    proxy, native = proxy_container(pod)
    assert proxy is not None
    checks.check(native, f"{source}: the proxy is a native sidecar (init container, restartPolicy Always)")
    worker = next((c for c in pod["containers"] if c["name"] == "worker"), None)
    if checks.check(worker is not None, f"{source}: the worker container runs in the same pod"):
        assert worker is not None
        checks.check(env_value(worker, "TEMPORAL_ADDRESS") == env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN"),
                     f"{source}: the worker's TEMPORAL_ADDRESS is the proxy's listen address")
    checks.check((env_value(proxy, "TEMPORAL_CODEC_PROXY_LISTEN") or "").startswith("127.0.0.1:"),
                 f"{source}: in sidecar mode the plaintext side is on loopback only")
    checks.check((env_value(proxy, "TEMPORAL_CODEC_PROXY_CODEC_LISTEN") or "").startswith("127.0.0.1:"),
                 f"{source}: a disabled codec server stays on loopback")
    checks.check("sidecar mode" in notes, f"{source}: NOTES.txt describes sidecar mode")
    checks.check(env_value(proxy, "TEMPORAL_CODEC_PROXY_MAX_BUFFERED_BYTES") == str(256 << 20),
                 f"{source}: the memory budget is half the 512Mi memory limit")
    checks.check(env_value(proxy, "TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES") is None,
                 f"{source}: a 256 MiB budget keeps the default message limit")


def gateway_full(checks: Checks, documents: list[dict[str, Any]], source: str, notes: str) -> None:
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    check_gateway_listener(checks, deployment, source)
    check_gateway_objects(checks, documents, source)
    check_service_monitor(checks, documents, source)
    checks.check("replicas" not in deployment["spec"],
                 f"{source}: with an HPA the Deployment leaves replicas to it")
    proxy, _ = proxy_container(pod_spec(deployment))
    assert proxy is not None
    checks.check(env_value(proxy, "AWS_KMS_CMK_ARN") == "arn:aws:kms:us-east-1:123456789012:key/gateway",
                 f"{source}: the KMS key reaches the proxy")
    checks.check(bool(env_value(proxy, "SSL_PEM")) and env_value(proxy, "TEMPORAL_CODEC_PROXY_CODEC_AUTH") == "jwt",
                 f"{source}: the codec server has TLS and JWT auth")
    checks.check(env_value(proxy, "TEMPORAL_CODEC_PROXY_CODEC_TOKEN_FROM") == "authorization-extras",
                 f"{source}: the codec server reads tokens where the values say")
    keys = env_value(proxy, "TEMPORAL_CODEC_PROXY_KEYS") or ""
    checks.check(keys.split(",")[0].startswith("2026-11="), f"{source}: the first key listed stays first (encrypts)")
    secret = next((d for d in documents if d["kind"] == "Secret"), None)
    if checks.check(secret is not None, f"{source}: inline keys become a Secret"):
        assert secret is not None
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "keys")
        checks.check(volume["secret"]["secretName"] == secret["metadata"]["name"],
                     f"{source}: the keys volume mounts that Secret")
        stored = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        checks.check(stored == {"2026-11": INLINE_KEY_CURRENT, "2026-05": INLINE_KEY_OLD},
                     f"{source}: the Secret holds each inline key under its id")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        checks.check("checksum/keys" in annotations, f"{source}: changing inline keys rolls the pods")
    checks.check(env_value(proxy, "TEMPORAL_CODEC_PROXY_MAX_BUFFERED_BYTES") == str(64 << 20)
                 and env_value(proxy, "TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES") == str(64 << 20),
                 f"{source}: a 128Mi limit gives a 64 MiB budget, and messages are limited to it")
    service_account = next(d for d in documents if d["kind"] == "ServiceAccount")
    checks.check("eks.amazonaws.com/role-arn" in service_account["metadata"].get("annotations", {}),
                 f"{source}: the ServiceAccount carries the IRSA role")


def sidecar_existing_secrets(checks: Checks, documents: list[dict[str, Any]], source: str, notes: str) -> None:
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    pod = pod_spec(deployment)
    proxy, native = proxy_container(pod)
    assert proxy is not None
    names = [c["name"] for c in pod["containers"]]
    checks.check(not native and sorted(names) == ["proxy", "worker"],
                 f"{source}: with sidecar.native false the pod has two containers", f"containers {names}")
    api_key = env_map(proxy).get("TEMPORAL_API_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
    checks.check(api_key == {"name": "temporal-cloud", "key": "api-key"},
                 f"{source}: the Cloud API key comes from the named Secret", f"got {api_key}")
    worker = next(c for c in pod["containers"] if c["name"] == "worker")
    checks.check("TEMPORAL_API_KEY" not in env_map(worker), f"{source}: the worker gets no API key")
    checks.check(env_value(proxy, "TEMPORAL_NAMESPACE") == "payments.a1b2c",
                 f"{source}: the namespace header setting reaches the proxy")
    volume = next(v for v in pod["volumes"] if v["name"] == "keys")
    checks.check(volume["secret"]["secretName"] == "payload-keys"
                 and [i["key"] for i in volume["secret"]["items"]] == ["k-2026-11", "k-2026-05"],
                 f"{source}: keys are mounted from the existing Secret's items")
    checks.check(env_value(proxy, "TEMPORAL_CODEC_PROXY_KEYS")
                 == "2026-11=file:/etc/temporal-codec-proxy/keys/k-2026-11,"
                    "2026-05=file:/etc/temporal-codec-proxy/keys/k-2026-05",
                 f"{source}: key ids map to the Secret's keys, in order")
    checks.check(env_value(worker, "TEMPORAL_ADDRESS") == "127.0.0.1:7233",
                 f"{source}: the worker's own env is kept and TEMPORAL_ADDRESS added")
    checks.check(env_value(worker, "TASK_QUEUE") == "payments", f"{source}: worker.env reaches the worker")


CASES = [
    Case("sidecar, chart defaults", {}, {"Deployment", "ServiceAccount"}, [], sidecar_defaults),
    Case(
        "gateway, TLS + JWT + ServiceMonitor + KMS + inline keys",
        {
            "mode": "gateway",
            "upstream": {"address": "temporal-frontend.temporal.svc.cluster.local:7233", "namespace": "payments"},
            "listener": {
                "tls": {"secretName": "gateway-tls"},
                "auth": "jwt",
                "jwt": {"jwksUrl": "https://login.example.com/.well-known/jwks.json",
                        "audiences": ["temporal-codec-proxy"], "issuer": "https://login.example.com/"},
            },
            "codecServer": {
                "enabled": True, "tls": {"secretName": "gateway-tls"}, "auth": "jwt",
                "jwksUrl": "https://login.example.com/.well-known/jwks.json", "rolesFrom": "claims",
                "tokenFrom": "authorization-extras", "corsOrigins": ["https://temporal-ui.example.com"],
            },
            "kms": {"keyArn": "arn:aws:kms:us-east-1:123456789012:key/gateway", "region": "us-east-1"},
            "keys": {"existingSecret": "", "items": [
                {"id": "2026-11", "value": INLINE_KEY_CURRENT},
                {"id": "2026-05", "value": INLINE_KEY_OLD},
            ]},
            "serviceAccount": {"annotations": {
                "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/temporal-codec-proxy"}},
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
            "resources": {"limits": {"memory": "128Mi"}},
        },
        {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount",
         "Secret", "ServiceMonitor"},
        [INLINE_KEY_CURRENT, INLINE_KEY_OLD],
        gateway_full,
    ),
    Case(
        "sidecar, existing Secrets, Temporal Cloud API key and mTLS, plain second container",
        {
            "sidecar": {"native": False},
            "upstream": {
                "address": "payments.a1b2c.tmprl.cloud:7233",
                "namespace": "payments.a1b2c",
                "tls": {"enabled": True, "clientCertSecret": "temporal-cloud-mtls",
                        "caSecret": {"name": "temporal-cloud-ca", "key": "ca.pem"}},
                "apiKey": {"existingSecret": "temporal-cloud", "key": "api-key"},
            },
            "keys": {"existingSecret": "payload-keys", "items": [
                {"id": "2026-11", "secretKey": "k-2026-11"},
                {"id": "2026-05", "secretKey": "k-2026-05"},
            ]},
            "worker": {"env": [{"name": "TASK_QUEUE", "value": "payments"}],
                       "image": {"repository": "registry.example.com/payments-worker", "tag": "1.4.2"}},
        },
        {"Deployment", "ServiceAccount"},
        [],
        sidecar_existing_secrets,
    ),
    Case(
        "sidecar, KMS only, ServiceMonitor",
        {
            "keys": {"items": []},
            "kms": {"keyTemplate": "alias/temporal-{namespace}", "region": "eu-west-1"},
            "metrics": {"serviceMonitor": {"enabled": True}},
            "serviceAccount": {"create": False, "name": "workers"},
        },
        {"Deployment", "Service", "ServiceMonitor"},
        [],
        lambda checks, documents, source, notes: check_service_monitor(checks, documents, source),
    ),
]

# Values the chart must refuse, and a fragment of the reason it must give.
REFUSED = [
    ("gateway without listener TLS", {"mode": "gateway"}, "listener.tls.secretName"),
    ("gateway without caller authentication",
     {"mode": "gateway", "listener": {"tls": {"secretName": "gateway-tls"}}}, "caller authentication"),
    ("no key source", {"keys": {"items": []}}, "no key source"),
    ("inline key value next to keys.existingSecret",
     {"keys": {"items": [{"id": "a", "value": INLINE_KEY_CURRENT}]}}, "keys.existingSecret is set"),
    ("codec server on the pod address without authentication",
     {"codecServer": {"enabled": True, "auth": "none"}}, "allowUnauthenticatedDecryption"),
    ("termination grace not above the shutdown grace", {"terminationGracePeriodSeconds": 30}, "must exceed"),
]


def check_chart(checks: Checks) -> list[tuple[str, dict[str, Any]]]:
    print(f"Helm chart {CHART.relative_to(REPO)} (Helm {helm_python.helm_sdk_version()})")
    rendered: list[tuple[str, dict[str, Any]]] = []
    for case in CASES:
        print(f"- render: {case.name}")
        source = f"chart[{case.name}]"
        try:
            documents, notes = render(case.values)
        except helm_python.HelmError as error:
            checks.check(False, f"{source} renders", str(error))
            continue
        checks.check(True, f"{source} renders")
        kinds = sorted(d["kind"] for d in documents)
        checks.check(set(kinds) == case.kinds, f"{source} renders exactly {sorted(case.kinds)}", f"got {kinds}")
        checks.check(len(kinds) == len(set(kinds)), f"{source} renders one object of each kind", f"got {kinds}")
        for document in documents:
            if document["kind"] == "Deployment":
                check_workload(checks, document, source, case.secrets)
            if document["kind"] != "Secret":
                text = yaml.safe_dump(document)
                leaked = [s for s in case.secrets if s in text]
                checks.check(not leaked, f"{source}: {describe(document)} holds no key material")
        if case.extra is not None:
            case.extra(checks, documents, source, notes)
        report = helm_python.lint(CHART, case.values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
        problems = report.get("errors", []) + [m["error"] for m in report.get("messages", []) if m["severity"] >= 2]
        checks.check(not problems, f"{source}: helm lint --strict is clean", "; ".join(problems))
        rendered += [(source, d) for d in documents]
    for name, values, reason in REFUSED:
        try:
            render(values)
        except helm_python.HelmRenderError as error:
            checks.check(reason in str(error), f"chart refuses {name}", f"reason given: {error}")
        else:
            checks.check(False, f"chart refuses {name}", "it rendered")
    return rendered


def check_plain_manifests(checks: Checks) -> list[tuple[str, dict[str, Any]]]:
    print(f"Plain manifests in {MANIFESTS.relative_to(REPO)}")
    found: list[tuple[str, dict[str, Any]]] = []
    files = sorted(MANIFESTS.glob("*.yaml")) + sorted(MANIFESTS.glob("*.yml"))
    checks.check(bool(files), f"{MANIFESTS.relative_to(REPO)} has manifests")
    kinds_by_file: dict[str, set[str]] = {}
    for path in files:
        source = str(path.relative_to(REPO))
        try:
            documents = load_documents(path.read_text(), source)
        except (yaml.YAMLError, ValueError) as error:
            checks.check(False, f"{source} is YAML of Kubernetes objects", str(error))
            continue
        kinds_by_file[path.name] = {d["kind"] for d in documents}
        for document in documents:
            if document["kind"] == "Deployment":
                check_workload(checks, document, source, [])
        found += [(source, d) for d in documents]
    sidecar = [d for s, d in found if s.endswith("sidecar.yaml") and d["kind"] == "Deployment"]
    if checks.check(len(sidecar) == 1, "sidecar.yaml has one Deployment"):
        pod = pod_spec(sidecar[0])
        proxy, native = proxy_container(pod)
        worker = next((c for c in pod.get("containers", []) if c["name"] == "worker"), None)
        checks.check(worker is not None and proxy is not None,
                     "sidecar.yaml runs the worker and the proxy in one pod")
        if worker is not None:
            checks.check(worker["image"] == "ghcr.io/example/temporal-worker:latest"
                         and env_value(worker, "TEMPORAL_ADDRESS") == "127.0.0.1:7233",
                         "sidecar.yaml worker connects to the proxy on 127.0.0.1:7233")
    gateway_docs = [d for s, d in found if s.endswith("gateway.yaml")]
    if checks.check(kinds_by_file.get("gateway.yaml", set()) >= {
            "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"},
            "gateway.yaml has Deployment, Service, HPA, PDB and ServiceAccount"):
        deployment = next(d for d in gateway_docs if d["kind"] == "Deployment")
        checks.check(deployment["spec"].get("replicas") == 2, "gateway.yaml starts 2 replicas")
        check_gateway_listener(checks, deployment, "gateway.yaml")
        check_gateway_objects(checks, gateway_docs, "gateway.yaml")
    for source, document in found:
        if document["kind"] == "ServiceAccount":
            checks.check("eks.amazonaws.com/role-arn" in document["metadata"].get("annotations", {}),
                         f"{source}: {describe(document)} carries the IRSA role annotation")
    return found


def dockerfile_stages(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Splits a Dockerfile into (FROM line, [(instruction, arguments)]) per stage."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append((arguments.strip(), []))
        elif stages:
            stages[-1][1].append((instruction, arguments.strip()))
    return stages


def check_dockerfile(checks: Checks) -> None:
    print(f"Container image {DOCKERFILE.relative_to(REPO)}")
    script = BUILD_SCRIPT.read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip().startswith("cargo ")]
    checks.check(commands == [BUILD_COMMAND], f"{BUILD_SCRIPT.relative_to(REPO)} runs exactly `{BUILD_COMMAND}`",
                 f"cargo commands: {commands}")
    checks.check(os.access(BUILD_SCRIPT, os.X_OK), f"{BUILD_SCRIPT.relative_to(REPO)} is executable")

    stages = dockerfile_stages(DOCKERFILE.read_text())
    if not checks.check(len(stages) >= 2, "the Dockerfile has a build stage and a runtime stage",
                        f"{len(stages)} stage(s)"):
        return
    *build_stages, (runtime_from, runtime) = stages
    build_runs = [args for _, steps in build_stages for instruction, args in steps if instruction == "RUN"]
    checks.check(any("scripts/build-release.sh" in run for run in build_runs),
                 "the build stage builds with scripts/build-release.sh", f"RUN steps: {build_runs}")
    checks.check(not any("cargo " in run for run in build_runs),
                 "the build stage runs cargo only through scripts/build-release.sh")
    users = [args for instruction, args in runtime if instruction == "USER"]
    user = users[-1].split(":")[0] if users else "root"
    checks.check(user not in ("root", "0") and (not user.isdigit() or int(user) != 0),
                 "the runtime stage runs as a non-root USER", f"USER {user}")
    checks.check(user.isdigit(), "the runtime USER is numeric, so runAsNonRoot can verify it", f"USER {user}")
    checks.check(not any(instruction == "RUN" for instruction, _ in runtime),
                 "the runtime stage installs nothing of its own")
    copies = [args for instruction, args in runtime if instruction == "COPY"]
    checks.check(len(copies) == 1 and copies[0].startswith("--from=") and "temporal-codec-proxy" in copies[0],
                 "the runtime stage copies only the binary from the build stage", f"COPY steps: {copies}")
    exposed = {port for instruction, args in runtime if instruction == "EXPOSE" for port in args.split()}
    checks.check({"7233", "8081", "9090"} <= exposed, "the image exposes 7233, 8081 and 9090", f"got {exposed}")
    entrypoint = [args for instruction, args in runtime if instruction == "ENTRYPOINT"]
    checks.check(entrypoint == ['["/usr/local/bin/temporal-codec-proxy"]'],
                 "the entrypoint is the proxy binary (exec form)", f"got {entrypoint}")
    command = [args for instruction, args in runtime if instruction == "CMD"]
    checks.check(command == ['["serve"]'], "the default command is serve", f"got {command}")
    checks.check("distroless" in runtime_from or "scratch" in runtime_from,
                 "the runtime image is minimal (distroless)", runtime_from)
    ignore = REPO / ".dockerignore"
    ignored = set(shlex.split(ignore.read_text(), comments=True)) if ignore.exists() else set()
    checks.check({"target", ".test-tools", ".git"} <= ignored,
                 ".dockerignore keeps target/, .test-tools/ and .git out of the build context",
                 f"entries: {sorted(ignored)}")


def main() -> int:
    checks = Checks()
    rendered = check_chart(checks)
    plain = check_plain_manifests(checks)
    print(f"Kubernetes schemas (kubernetes-validate {kubernetes_validate.__version__}, "
          f"Kubernetes {KUBERNETES_VERSION}, strict)")
    for source, document in rendered + plain:
        validate_schema(checks, document, source)
    check_dockerfile(checks)
    print()
    if checks.failures:
        print(f"check_manifests: {len(checks.failures)} of {checks.passed + len(checks.failures)} checks failed:",
              file=sys.stderr)
        for failure in checks.failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print(f"check_manifests: all {checks.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
