"""Secret references: `env:NAME` or `file:PATH`. Values are read only when needed and never kept in a repr."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SecretRef:
    ref: str  # "env:NAME" or "file:PATH" as written in the manifest
    base_dir: str  # `file:` paths are relative to the manifest folder
