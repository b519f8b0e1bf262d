"""Secret references: `env:NAME` or `file:PATH`. Values are read only when needed and never kept in a repr.

Manifests live in Git, so a password is never written in one: it names where the
value lives. `file:` paths are relative to the folder of the YAML file that
holds the reference (like Kustomize), so a folder of manifests can be validated
from anywhere. They must resolve inside the manifest folder, or inside a folder
the command line names with `--secrets-dir` (a deployment that mounts its secrets
elsewhere, e.g. /run/secrets): a manifest from a pull request never reads
`/etc/shadow` into a password.

Which command checks what (README "Secrets"): `validate` runs offline, where the
deployment's secrets usually are not, so it checks each reference's form and that a
`file:` path stays inside the allowed folders. `plan`, `apply` and `watch` also read
every secret the manifests name (set, a regular file, non-empty, UTF-8) before they
send anything, and report every one they cannot read at once (SecretPolicy).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

from .errors import ReconcileError
from .paths import PathRefused, confine, usable

# POSIX shells only export names like this; anything else could never be set.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HINT = ("write `env:NAME` to read it from an environment variable, or `file:PATH` for a file "
         "relative to the manifest's folder; keep the value itself out of Git")
# A password, a token or a key file: far below this. A bigger `file:` is a mistake (a dump, a log, /dev/zero).
MAX_SECRET_BYTES = 64 * 1024
OUTSIDE_HINT = ("keep secret files inside the manifest folder, or name the folder they are mounted in with "
                "--secrets-dir DIR")


class SecretRefError(ValueError):
    """A string that is not a usable secret reference; never carries the string itself (it may be a password)."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


class SecretUnreadable(ReconcileError):
    """A reference whose value cannot be read now: what is wrong and how to fix it (never a value)."""

    def __init__(self, ref: str, message: str, hint: str):
        super().__init__(f"secret {ref}: {message}; {hint}")
        self.message = f"secret {ref}: {message}"
        self.hint = hint


@dataclass(frozen=True)
class SecretPolicy:
    """What a command checks of the secrets its manifests name, before it sends anything."""

    dirs: tuple[str, ...] = ()  # `--secrets-dir`: folders besides the manifest folder `file:` may name
    read: bool = False  # read every secret now: plan, apply and watch; `validate` (offline) does not
    # The severity of a secret that cannot be read. "error" stops the command before any request; a
    # command that only compares secrets (plan) may choose "warning" and show such a field as unknown.
    unreadable: str = "error"


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

    @property
    def is_file(self) -> bool:
        return self.ref.startswith("file:")

    def confine(self, roots: Sequence[str]) -> None:
        """SecretUnreadable when a `file:` reference resolves (links included) outside all `roots`."""
        if self.is_file:
            try:
                confine(self.path, roots, OUTSIDE_HINT)
            except PathRefused as refused:
                raise SecretUnreadable(self.ref, refused.message, refused.hint) from None

    def resolve(self) -> str:
        """The secret value; SecretUnreadable naming the reference (never a value) when it cannot be read."""
        scheme, _, name = self.ref.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise SecretUnreadable(self.ref, f"the environment variable {name} is not set",
                                       "set it from your secret store (the demo's values are in manifests/demo.env)")
            if not value:
                raise SecretUnreadable(self.ref, f"the environment variable {name} is empty",
                                       "give it the secret's value")
            return value
        value = _read_file(self.ref, self.path)
        if not value:
            raise SecretUnreadable(self.ref, f"{self.path} is empty", "write the secret into it")
        return value

    def resolve_if_readable(self) -> str | None:
        """The value, or None when it cannot be read: for a plan, which only compares secrets and was let run
        without them (each unreadable one was reported as a warning, saying what was not checked)."""
        try:
            return self.resolve()
        except SecretUnreadable:
            return None


def _read_file(ref: str, path: str) -> str:
    try:
        usable(path, max_bytes=MAX_SECRET_BYTES)  # never opens a FIFO or a device
        with open(path, "rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except PathRefused as refused:
        raise SecretUnreadable(ref, refused.message, refused.hint) from None
    except OSError as error:
        raise SecretUnreadable(ref, f"cannot read {path} ({error.strerror})", "fix its permissions") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnreadable(ref, f"{path} is not UTF-8 text", "save it as UTF-8") from None
    # Editors and `echo` end files with a newline that is not part of the password.
    return text.removesuffix("\n").removesuffix("\r")
