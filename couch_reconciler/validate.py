"""Stage 2, validate: manifests -> every problem at once, each on the line of the offending key.

Three passes, all offline: the kind's JSON Schema (shape), checks that hold for
every kind (known kind, unique names), and each kind's own `MANIFEST.check`
(meaning, cross-references). A kind's check only sees manifests whose shape is
valid, so it may rely on the schema.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jsonschema

from .kinds import MANIFESTS
from .kinds.base import ManifestKind
from .kinds.checks import closest, declaring
from .model import Diagnostic, KeyPath, Manifest, describe_value
from .schemas import schema_errors, secret_paths
from .secrets import SecretPolicy, SecretRef, SecretRefError, SecretUnreadable


def validate(manifests: Sequence[Manifest], secrets: SecretPolicy = SecretPolicy()) -> list[Diagnostic]:
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
    with declaring(shaped):
        for kind, plugin in sorted(MANIFESTS.items()):
            diagnostics.extend(plugin.check([m for m in shaped if m.kind == kind], shaped))
    diagnostics.extend(secret_diagnostics(shaped, secrets))
    return sorted(diagnostics, key=lambda diagnostic: diagnostic.position)


# What a plan made without a secret says of it: it could not compare it with the server's.
UNCHECKED_SECRET = "not compared with the server's"


def secret_diagnostics(manifests: Sequence[Manifest], policy: SecretPolicy) -> Iterator[Diagnostic]:
    """One diagnostic per secret reference the policy refuses, at the reference's line: a `file:` leading out of
    the allowed folders (always an error), and with `policy.read` a secret that cannot be read now. Each
    secret is read once however many manifests name it; its value is dropped at once."""
    unreadable: dict[tuple[str, str], SecretUnreadable | None] = {}
    for manifest in manifests:
        roots = [manifest.root, *policy.dirs]
        for path, text in secret_references(manifest, MANIFESTS[manifest.kind].schema):
            ref = SecretRef.parse(text, manifest.base_dir)
            try:
                ref.confine(roots)
            except SecretUnreadable as outside:
                yield Diagnostic.at(manifest, path, f"`{_dotted(path)}`: {outside.message}", outside.hint)
                continue
            if not policy.read:
                continue
            identity = (ref.ref, ref.path if ref.is_file else "")
            if identity not in unreadable:
                unreadable[identity] = _unreadable(ref)
            failure = unreadable[identity]
            if failure is None:
                continue
            if policy.unreadable == "warning":
                yield Diagnostic.at(manifest, path, f"`{_dotted(path)}`: {UNCHECKED_SECRET}: {failure.message}",
                                    f"{failure.hint} (apply needs it)", severity="warning")
            else:
                yield Diagnostic.at(manifest, path, f"`{_dotted(path)}`: {failure.message}", failure.hint)


def _unreadable(ref: SecretRef) -> SecretUnreadable | None:
    """Why `ref` cannot be read now, or None; the value read is dropped at once."""
    try:
        ref.resolve()
    except SecretUnreadable as problem:
        return problem
    return None


def secret_references(manifest: Manifest, schema_file: str) -> Iterator[tuple[KeyPath, str]]:
    """(key path, reference as written) of every secret reference in the document, wherever its kind's
    schema says a secret reference goes (`format: secret-ref`), so a kind adding one needs no code here."""
    for pattern in secret_paths(schema_file):
        yield from _matching(manifest.document, pattern, ())


def _matching(value: Any, pattern: tuple[str, ...], path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if not pattern:
        if isinstance(value, str):
            yield path, value
        return
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        items: Iterable[tuple[str | int, Any]] = (enumerate(value) if isinstance(value, list)
                                                   else value.items() if isinstance(value, dict) else ())
    else:
        items = [(head, value[head])] if isinstance(value, dict) and head in value else []
    for key, sub in items:
        yield from _matching(sub, rest, path + (key,))


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


def schema_diagnostics(manifest: Manifest, file: str) -> Iterator[Diagnostic]:
    for error in schema_errors(manifest.document, file):
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
        words = " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in wanted)
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
