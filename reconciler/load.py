"""Stage 1, load: YAML files on disk -> Manifest objects that remember where every key came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

API_VERSION = "reconciler/v1"

# A path into a document: ("spec", "security", "members", "names", 0)
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Source:
    """Where a manifest value was written, for `file:line:` messages."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Manifest:
    """One YAML document: apiVersion, kind, metadata.name, spec."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    source: Source
    base_dir: str  # the manifest folder, against which `file:` secret references resolve
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    def where(self, *path: str | int) -> Source:
        """The line of the deepest key along `path` that the document has (the document start at worst)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return Source(self.source.file, line)
        return self.source
