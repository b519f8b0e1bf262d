"""Stage 2, validate: manifests -> every problem at once, each on the line of the offending key.

Three passes, all offline: the kind's JSON Schema (shape), checks that hold for
every kind (known kind, unique names), and each kind's own `MANIFEST.check`
(meaning, cross-references). A kind's check only sees manifests whose shape is
valid, so it may rely on the schema.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jsonschema
import jsonschema_rs
import referencing
from referencing.jsonschema import DRAFT202012

from .kinds import MANIFESTS
from .kinds.base import ManifestKind
from .kinds.checks import closest
from .model import Diagnostic, Manifest, describe_value
from .secrets import SecretRef, SecretRefError

SCHEMA_DIR = Path(__file__).parent / "schemas"
ENVELOPE_SCHEMA = "manifest.schema.json"  # dispatches on `kind`; what editors use for multi-kind files



def validate(manifests: Sequence[Manifest]) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    shaped: list[Manifest] = []
    for manifest in manifests:
        if manifest.kind not in MANIFESTS:
            diagnostics.append(Diagnostic.at(manifest, ("kind",), f"unknown kind `{manifest.kind}`",
                                             closest(manifest.kind, MANIFESTS, "the kinds are")))
            continue
        problems = list(schema_diagnostics(manifest, MANIFESTS[manifest.kind].schema))
        diagnostics.extend(problems)
        if not problems:
            shaped.append(manifest)
    diagnostics.extend(_duplicate_names(manifests, MANIFESTS))
    for kind, plugin in sorted(MANIFESTS.items()):
        diagnostics.extend(plugin.check([m for m in shaped if m.kind == kind], shaped))
    return sorted(diagnostics, key=lambda diagnostic: diagnostic.position)


def _duplicate_names(manifests: Sequence[Manifest], kinds: Mapping[str, ManifestKind]) -> Iterator[Diagnostic]:
    first: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        plugin = kinds.get(manifest.kind)
        if plugin is None or not plugin.unique_names:
            continue
        earlier = first.setdefault((manifest.kind, manifest.name), manifest)
        if earlier is not manifest:
            yield Diagnostic.at(manifest, ("metadata", "name"),
                                f"declared twice (first at {earlier.where('metadata', 'name')})",
                                "merge the two documents or rename one")


# ---------------------------------------------------------------- schemas

@cache
def schema(file: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))


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


def schema_diagnostics(manifest: Manifest, file: str) -> Iterator[Diagnostic]:
    try:
        if _fast_validator(file).is_valid(manifest.document):
            return
    except ValueError:
        pass  # a YAML value JSON has no type for (a date, bytes): jsonschema says what is wrong with it
    for error in _validator(file).iter_errors(manifest.document):
        yield from _explain(manifest, error)


def _explain(manifest: Manifest, error: jsonschema.ValidationError) -> Iterator[Diagnostic]:
    """A schema error in words a user acts on. Never repeats a value that could be a secret."""
    path = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path:
        path += (error.instance,)  # jsonschema reports a bad key at its mapping; point at the key itself
    field = _dotted(path)
    rule = error.schema if isinstance(error.schema, dict) else {}
    if "x-message" in rule:
        yield Diagnostic.at(manifest, path, f"`{field}` {rule['x-message']}", rule.get("x-hint", _described(rule)))
        return
    instance, kind = error.instance, error.validator
    if kind == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        name = missing.group(1) if missing else str(error.validator_value)
        where = f" in `{field}`" if path else ""
        described = _described(error.schema.get("properties", {}).get(name, {}))
        yield Diagnostic.at(manifest, path, f"`{name}` is missing{where}", f"add `{name}:` ({described})")
    elif kind in ("additionalProperties", "unevaluatedProperties"):
        allowed = sorted(error.schema.get("properties", {}))
        for key in sorted(k for k in instance if k not in allowed):
            where = f" in `{field}`" if path else " at the top level"
            yield Diagnostic.at(manifest, path + (key,), f"unknown field `{key}`{where}",
                                closest(key, allowed, "the fields are"))
    elif kind == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in wanted)
        yield Diagnostic.at(manifest, path, f"`{field}` must be {words}, not {describe_value(instance)}",
                            _described(rule, path))
    elif kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        yield Diagnostic.at(manifest, path, f"`{field}` is `{instance}`, not one of {', '.join(map(str, options))}",
                            closest(str(instance), [str(o) for o in options], "write one of"))
    elif kind == "format" and isinstance(error.cause, SecretRefError):
        yield Diagnostic.at(manifest, path, f"`{field}`: {error.cause.message}", error.cause.hint)
    elif kind in ("minimum", "exclusiveMinimum", "maximum"):
        bound = {"minimum": "at least", "exclusiveMinimum": "more than", "maximum": "at most"}[kind]
        yield Diagnostic.at(manifest, path, f"`{field}` must be {bound} {error.validator_value}",
                            _described(rule, path))
    elif kind in ("minItems", "minLength", "minProperties"):
        yield Diagnostic.at(manifest, path, f"`{field}` must not be empty", _described(rule, path))
    elif kind == "uniqueItems":
        yield Diagnostic.at(manifest, path, f"`{field}` lists the same value twice", "remove the repetition")
    else:
        yield Diagnostic.at(manifest, path, f"`{field}` is not valid ({error.message})", _described(rule))


_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "empty"}


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "document"


def _described(rule: dict[str, Any], path: Sequence[str | int] = ()) -> str:
    description = rule.get("description")
    if description is None:
        return "see `reconcile schema KIND` for the expected shape"
    key = next((part for part in reversed(path) if isinstance(part, str)), None)
    return f"`{key}` is {description}" if key and path and path[-1] == key else description
