"""Render a kustomize overlay and validate it: `python -m deploy.k8s.render deploy/k8s/overlays/dev --validate`.

kustomize itself is not installed on this project's machines and no PyPI package renders it, so
this implements the small subset our kustomizations use, with kustomize's meaning:
  resources    files and folders (a folder holds a kustomization.yaml), in order
  namespace    set on every namespaced object
  labels       `pairs` added to metadata.labels (not to selectors)
  patches      strategic-merge patches: maps merge, lists of named items (containers, env, ports,
               volumes) merge by `name`, other lists are replaced, a null deletes the key; a patch
               applies to the object of its kind and name, or to every object matching `target`
  images       `name` -> `newName` / `newTag` on containers and init containers
Anything else in a kustomization.yaml is refused rather than silently ignored, so a real
`kustomize build` gives the same output for these files.

Validation: every object against the Kubernetes OpenAPI schemas shipped by kubernetes-validate
(strict: unknown fields are errors), for the oldest and newest versions we support; KEDA's CRDs
against the local schemas in schemas/; and the references between objects (selectors, scale
targets, ConfigMaps and Secrets) resolve.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "patches", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "IngressClass"}
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
# Rendering


def load_documents(path: Path) -> list[Doc]:
    # a JSON round trip: YAML aliases would otherwise make one map shared by several objects
    return [json.loads(json.dumps(doc)) for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(folder: Path) -> list[Doc]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise KustomizeError(f"{folder}: unsupported kustomization keys {sorted(unknown)}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        target = folder / entry
        docs.extend(build(target) if target.is_dir() else load_documents(target))
    for patch in kustomization.get("patches", []):
        apply_patch(docs, folder / patch["path"], patch.get("target"))
    for image in kustomization.get("images", []):
        set_image(docs, image)
    for pair in kustomization.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(pair["pairs"])
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge, the part of it our patches use."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = [dict(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old["name"] == item["name"]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _matches(doc: Doc, target: dict[str, Any]) -> bool:
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    if "name" in target and doc["metadata"]["name"] != target["name"]:
        return False
    if "labelSelector" in target:
        key, _, value = target["labelSelector"].partition("=")
        if doc["metadata"].get("labels", {}).get(key) != value:
            return False
    return True


def apply_patch(docs: list[Doc], path: Path, target: dict[str, Any] | None) -> None:
    for patch in load_documents(path):
        selector = target or {"kind": patch["kind"], "name": patch["metadata"]["name"]}
        matched = [i for i, doc in enumerate(docs) if _matches(doc, selector)]
        if not matched:
            raise KustomizeError(f"{path}: no object matches {selector}")
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
        if target:  # the patch's own name is a placeholder when a target selects the objects
            body = {**body, "metadata": {k: v for k, v in body.get("metadata", {}).items() if k != "name"}}
        for index in matched:
            docs[index] = merge(docs[index], body)


def _containers(doc: Doc) -> Iterable[Doc]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def set_image(docs: list[Doc], image: dict[str, str]) -> None:
    for doc in docs:
        for container in _containers(doc):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


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
    parser.add_argument("overlay", type=Path)
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    docs = build(args.overlay)
    text = "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=110) for doc in docs)
    if args.out:
        args.out.write_text(text)
    elif not args.validate:
        sys.stdout.write(text)
    if args.validate:
        external = EXTERNAL_SECRETS if not any(d["kind"] == "Secret" for d in docs) else set()
        errors = validate(docs, external)
        for error in errors:
            print(error, file=sys.stderr)
        print(f"{args.overlay}: {len(docs)} objects, {len(errors)} errors", file=sys.stderr)
        sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
