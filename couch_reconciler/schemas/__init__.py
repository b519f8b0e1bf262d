"""The manifests' JSON Schemas (draft 2020-12, one file per kind sharing `common.schema.json`): reading them,
checking a document against one, and bundling one with what it refers to for editors and other tools.

The files carry no `$id`: their relative `$ref`s (`common.schema.json#/$defs/metadata`) then resolve against
where the file was read from (JSON Schema 2020-12 core, 8.2.1 and 9.1.1), so the files work as they lie on
disk, or as `reconcile schema --out DIR` writes them, for editors and validators such as check-jsonschema.
An `https` `$id` would make those tools fetch every `$ref` from that host instead. The stable public
identity, `PUBLIC_ID` + file name, is given to each schema when it is read here, which is what
`reconcile schema` prints: there every schema it refers to is embedded under that `$id`, so nothing is
fetched either.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import jsonschema_rs
import referencing
from referencing.jsonschema import DRAFT202012

from ..secrets import SecretRef, SecretRefError

SCHEMA_DIR = Path(__file__).parent
ENVELOPE_SCHEMA = "manifest.schema.json"  # dispatches on `kind`; what editors use for multi-kind files
# The version is the manifests' apiVersion (reconciler/v1): a schema of another apiVersion gets another path.
PUBLIC_ID = "https://couch-reconciler.github.io/schemas/v1/"


@cache
def schema(file: str) -> dict[str, Any]:
    """The schema in `file` (a name here, or the full path of a kind's schema kept elsewhere) under its
    public `$id`; a schema kept elsewhere may name its own."""
    loaded = json.loads(schema_text(file))
    identity = loaded.pop("$id", None) or PUBLIC_ID + Path(file).name
    return {"$schema": loaded.pop("$schema"), "$id": identity, **loaded}


def schema_text(file: str) -> str:
    """The file as it is on disk."""
    return (SCHEMA_DIR / file).read_text(encoding="utf-8")


def schema_files() -> list[str]:
    return sorted(path.name for path in SCHEMA_DIR.glob("*.schema.json"))


@cache
def _registry() -> referencing.Registry:
    resources = [(schema(f)["$id"], DRAFT202012.create_resource(schema(f))) for f in schema_files()]
    return referencing.Registry().with_resources(resources)


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("secret-ref", raises=SecretRefError)
def _is_secret_ref(value: object) -> bool:
    if isinstance(value, str):
        SecretRef.parse(value, ".")
    return True


@cache
def _validator(file: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(file), registry=_registry(), format_checker=_FORMATS)


def _holds_secret_ref(value: str) -> bool:
    try:
        return _is_secret_ref(value)
    except SecretRefError:
        return False


@cache
def _fast_validator(file: str) -> jsonschema_rs.Validator:
    """The same schema compiled by jsonschema-rs, which says "valid" about 50x sooner than jsonschema; only
    a document it refuses is walked by jsonschema, whose errors `_explain` puts in words."""
    registry = jsonschema_rs.Registry([(schema(f)["$id"], schema(f)) for f in schema_files()])
    return jsonschema_rs.validator_for(schema(file), registry=registry, validate_formats=True,
                                       formats={"secret-ref": _holds_secret_ref})


def bundle(file: str) -> dict[str, Any]:
    """`file`'s schema with every schema it refers to embedded under `$defs` (a JSON Schema 2020-12 compound
    document): one self-contained JSON document to hand to an editor or another validator."""
    root = dict(schema(file))
    embedded: dict[str, Any] = {}
    pending = [file]
    while pending:
        for ref in _file_refs(schema(pending.pop())):
            if ref != file and ref not in embedded:
                embedded[ref] = schema(ref)
                pending.append(ref)
    if embedded:
        root["$defs"] = {**root.get("$defs", {}), **dict(sorted(embedded.items()))}
    return root


def _file_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            yield ref.partition("#")[0]
        for value in node.values():
            yield from _file_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_refs(value)


def schema_errors(document: Mapping[str, Any], file: str) -> Iterator[jsonschema.ValidationError]:
    """What is wrong with `document` by the schema in `file` (nothing when it is valid)."""
    try:
        if _fast_validator(file).is_valid(document):
            return
    except ValueError:
        pass  # a YAML value JSON has no type for (a date, bytes): jsonschema says what is wrong with it
    yield from _validator(file).iter_errors(document)


@cache
def secret_paths(file: str) -> tuple[tuple[str, ...], ...]:
    """Key paths of the schema's secret references, `*` for any list index or mapping key."""
    found: set[tuple[str, ...]] = set()

    def walk(node: Any, current_file: str, path: tuple[str, ...], seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        if node.get("format") == "secret-ref":
            found.add(path)
        ref = node.get("$ref")
        if isinstance(ref, str):
            target_file, _, pointer = ref.partition("#")
            target_file = target_file or current_file
            if f"{target_file}#{pointer}" not in seen:
                target: Any = schema(target_file)
                for part in filter(None, pointer.split("/")):
                    target = target[part]
                walk(target, target_file, path, seen | {f"{target_file}#{pointer}"})
        for key, sub in node.get("properties", {}).items():
            walk(sub, current_file, path + (key,), seen)
        for key in ("items", "additionalProperties"):
            walk(node.get(key), current_file, path + ("*",), seen)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key, []):
                walk(sub, current_file, path, seen)
        for key in ("then", "else"):
            walk(node.get(key), current_file, path, seen)

    walk(schema(file), file, (), frozenset())
    return tuple(sorted(found))
