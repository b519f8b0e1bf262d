"""Secret references: `env:NAME` or `file:PATH`. Values are read only when needed and never kept in a repr.

Manifests live in Git, so a password is never written in one: it names where the
value lives. `file:` paths are relative to the folder of the YAML file that
holds the reference (like Kustomize), so a folder of manifests can be validated
from anywhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ReconcileError

# POSIX shells only export names like this; anything else could never be set.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HINT = ("write `env:NAME` to read it from an environment variable, or `file:PATH` for a file "
         "relative to the manifest's folder; keep the value itself out of Git")


class SecretRefError(ValueError):
    """A string that is not a usable secret reference; never carries the string itself (it may be a password)."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class SecretRef:
    ref: str  # "env:NAME" or "file:PATH" as written in the manifest
    base_dir: str  # `file:` paths are relative to the manifest folder

    @classmethod
    def parse(cls, text: str, base_dir: str) -> "SecretRef":
        """The reference `text` stands for, or SecretRefError saying what is wrong without repeating `text`."""
        scheme, sep, rest = text.partition(":")
        if not sep or scheme not in ("env", "file"):
            raise SecretRefError("a password written inline (or an unknown reference) is not allowed", _HINT)
        if scheme == "env" and not _ENV_NAME.fullmatch(rest):
            raise SecretRefError("`env:` must be followed by an environment variable name (letters, digits and _, "
                                 "not starting with a digit)", "write e.g. `env:ALICE_PASSWORD`")
        if scheme == "file" and not rest.strip():
            raise SecretRefError("`file:` needs a path", "write e.g. `file:secrets/alice.password`")
        return cls(text, base_dir)

    @property
    def path(self) -> str:
        """For `file:` references, the file the value is read from."""
        return os.path.normpath(os.path.join(self.base_dir, self.ref.partition(":")[2]))

    def resolve(self) -> str:
        """The secret value; ReconcileError naming the reference (never a value) when it cannot be read."""
        scheme, _, name = self.ref.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise ReconcileError(f"secret {self.ref}: the environment variable {name} is not set; "
                                     f"set it from your secret store (the demo's values are in manifests/demo.env)")
        else:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    # Editors and `echo` end files with a newline that is not part of the password.
                    value = handle.read().removesuffix("\n").removesuffix("\r")
            except OSError as error:
                raise ReconcileError(f"secret {self.ref}: cannot read {self.path} ({error.strerror}); "
                                     "create the file or fix the path") from None
            except UnicodeDecodeError:
                raise ReconcileError(f"secret {self.ref}: {self.path} is not UTF-8 text; save it as UTF-8") from None
        if not value:
            raise ReconcileError(f"secret {self.ref} is empty; give it a value")
        return value
