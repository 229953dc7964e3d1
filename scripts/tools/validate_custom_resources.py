#!/usr/bin/env python3
"""Validates custom resources strictly against the openAPIV3Schema of their CRDs, offline.

    validate_custom_resources.py --crd CRD.yaml [--crd CRD.yaml ...] [MANIFEST.yaml ...]

kubernetes-validate knows only the built-in kinds (for any other kind it warns "Couldn't find
schema" and passes), so the objects of CRDs (the chart's ServiceMonitor, PodMonitor and
PrometheusRule, whose CRDs scripts/install-test-tools.sh takes from the prometheus-operator Go
module) are checked here, as the API server would with strict field validation:

- the schema of the document's apiVersion (group and a served version of the CRD);
- unknown fields refused: every object schema without x-kubernetes-preserve-unknown-fields
  gets `additionalProperties: false` (the API server prunes or, strictly, refuses them);
- `nullable` honoured, defaults applied before validation (as the API server does), then
  types, enums, patterns, bounds and required fields checked (jsonschema, draft 4: the
  boolean exclusiveMinimum/Maximum of OpenAPI v3);
- `x-kubernetes-list-type: set` / `map` items unique (by their x-kubernetes-list-map-keys);
- metadata against the strict ObjectMeta of kubernetes-validate's bundled schemas, when the
  package is importable (the venv of the install script has it).
CEL rules (x-kubernetes-validations) are not evaluated: the script fails when a schema has
any, rather than passing what it cannot check.

Prints "ok KIND NAME" per valid document, else "ERROR FILE KIND NAME: PATH: MESSAGE" per error;
exits 1 on any error, on a document whose kind has no CRD given, or on a file that does not
parse. Runs with the venv's python (jsonschema and PyYAML are kubernetes-validate's
dependencies); with no manifests it only loads and checks the CRDs.
"""

import argparse
import copy
import json
import re
import sys

import jsonschema
import yaml


def fail(message):
    print(f"ERROR {message}")
    sys.exit(1)


def load_all(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        fail(f"{path}: cannot read: {e}")


def python_pattern(pattern):
    """A Go (RE2) pattern as Python's re takes it: global flags such as `^(?i)` (RE2 takes them
    anywhere, Python 3.11 only at the start) moved to the front."""
    flags = "".join(re.findall(r"\(\?([aimsux]+)\)", pattern))
    return f"(?{flags})" + re.sub(r"\(\?[aimsux]+\)", "", pattern) if flags else pattern


class Strict:
    """Turns a structural schema into a strict draft-4 JSON schema (a copy)."""

    def __init__(self, crd_path):
        self.crd_path = crd_path

    def convert(self, schema, path="", root=False):
        if not isinstance(schema, dict):
            return schema
        s = dict(schema)
        if "x-kubernetes-validations" in s:
            fail(f"{self.crd_path}: {path or '<root>'}: has CEL rules (x-kubernetes-validations), "
                 "which this script cannot evaluate")
        if isinstance(s.get("pattern"), str):
            s["pattern"] = python_pattern(s["pattern"])
        if s.pop("nullable", False) and "type" in s:
            s["type"] = [s["type"], "null"]
        if "properties" in s:
            s["properties"] = {k: self.convert(v, f"{path}.{k}") for k, v in s["properties"].items()}
        if isinstance(s.get("additionalProperties"), dict):
            s["additionalProperties"] = self.convert(s["additionalProperties"], f"{path}.*")
        if isinstance(s.get("items"), dict):
            s["items"] = self.convert(s["items"], f"{path}[]")
        # anyOf/allOf/oneOf/not of a structural schema only restrict values (their properties are
        # also in `properties`), so they stay as they are.
        is_object = s.get("type") == "object" or (isinstance(s.get("type"), list) and "object" in s["type"])
        if is_object and not s.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
            props = s.setdefault("properties", {})
            if root or s.get("x-kubernetes-embedded-resource"):
                # apiVersion, kind and metadata are the API server's; the schema may omit them, and
                # metadata's fields are ObjectMeta's (checked separately at the root).
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                meta = dict(props.get("metadata") or {"type": "object"})
                meta.pop("additionalProperties", None)
                props["metadata"] = meta
            s["additionalProperties"] = False
        return s


def apply_defaults(value, schema):
    """Sets the `default` of missing properties, as the API server does before validating."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if name not in value and isinstance(prop, dict) and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                apply_defaults(value[name], prop)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                if name not in (schema.get("properties") or {}):
                    apply_defaults(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def list_type_errors(value, schema, path):
    """Duplicates in lists marked x-kubernetes-list-type set or map."""
    errors = []
    if not isinstance(schema, dict):
        return errors
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            errors += list_type_errors(item, sub, path + [name])
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        seen = {}
        for i, item in enumerate(value):
            if kind == "set":
                key = json.dumps(item, sort_keys=True)
            elif kind == "map" and isinstance(item, dict):
                key = json.dumps([item.get(k) for k in schema.get("x-kubernetes-list-map-keys", [])])
            else:
                key = None
            if key is not None:
                if key in seen:
                    errors.append((path + [i], f"duplicate entry of a list of type {kind} "
                                   f"(the same as item {seen[key]}): {key}"))
                seen.setdefault(key, i)
            errors += list_type_errors(item, schema.get("items"), path + [i])
    return errors


def object_meta_validator():
    """A validator of the strict ObjectMeta of kubernetes-validate's newest schemas, or None."""
    try:
        import importlib_resources
        import kubernetes_validate.utils as kv
        from referencing import Registry, Resource
    except ImportError:
        return None
    folder = importlib_resources.files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{kv.latest_version()}-local-strict")
    definitions = json.loads(folder.joinpath("_definitions.json").read_text())
    name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    if name not in definitions.get("$defs", {}) or "$id" not in definitions:
        fail(f"kubernetes-validate's {folder}/_definitions.json has no {name} in $defs")
    registry = Resource.from_contents(definitions) @ Registry()
    schema = {"$ref": f"{definitions['$id']}#/$defs/{name}"}
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def load_crds(paths):
    """{(group, version, kind): (schema, crd path)} of the served versions of the CRDs."""
    schemas = {}
    for path in paths:
        docs = load_all(path)
        if not docs:
            fail(f"{path}: no document")
        for crd in docs:
            if crd.get("kind") != "CustomResourceDefinition":
                fail(f"{path}: a {crd.get('kind')}, not a CustomResourceDefinition")
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    fail(f"{path}: version {version['name']} has no openAPIV3Schema")
                strict = Strict(path).convert(schema, root=True)
                try:
                    jsonschema.Draft4Validator.check_schema(strict)
                except jsonschema.SchemaError as e:
                    at = ".".join(str(p) for p in e.absolute_path) or "<root>"
                    fail(f"{path}: version {version['name']}: the schema, made strict, is not valid at {at}: {e.message[:300]}")
                schemas[(spec["group"], version["name"], spec["names"]["kind"])] = (strict, path)
    return schemas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crd", action="append", default=[], required=True, help="a CRD file (repeatable)")
    parser.add_argument("manifests", nargs="*")
    args = parser.parse_args()
    schemas = load_crds(args.crd)
    meta = object_meta_validator()
    if meta is None:
        print("note: kubernetes-validate is not importable: metadata is not checked", file=sys.stderr)
    if not args.manifests:
        print(f"loaded {len(schemas)} schemas: " + ", ".join(f"{g}/{v} {k}" for g, v, k in sorted(schemas)))
        return 0
    rc = 0
    for path in args.manifests:
        for doc in load_all(path):
            if not isinstance(doc, dict):
                print(f"ERROR {path}: a document that is not an object: {doc!r}")
                rc = 1
                continue
            kind = doc.get("kind")
            name = (doc.get("metadata") or {}).get("name")
            group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
            found = schemas.get((group, version, kind))
            if found is None:
                known = ", ".join(f"{g}/{v} {k}" for g, v, k in sorted(schemas)) or "none"
                print(f"ERROR {path} {kind} {name}: no CRD given for apiVersion {doc.get('apiVersion')} "
                      f"kind {kind} (CRDs given: {known})")
                rc = 1
                continue
            schema, _ = found
            data = copy.deepcopy(doc)
            apply_defaults(data, schema)
            errors = [(list(e.absolute_path), e.message) for e in jsonschema.Draft4Validator(schema).iter_errors(data)]
            if meta is not None and isinstance(data.get("metadata"), dict):
                errors += [(["metadata"] + list(e.absolute_path), e.message) for e in meta.iter_errors(data["metadata"])]
            errors += list_type_errors(data, schema, [])
            if errors:
                rc = 1
                for where, message in sorted(errors, key=lambda e: [str(p) for p in e[0]]):
                    at = ".".join(str(p) for p in where) or "<root>"
                    print(f"ERROR {path} {kind} {name}: {at}: {message}")
            else:
                print(f"ok {kind} {name}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
