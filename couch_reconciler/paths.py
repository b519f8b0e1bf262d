"""What a manifest may point at on disk: regular files and folders inside the manifest folder.

Manifests come from pull requests, so a reviewer must not have to spot a `path: ../../home` or a
`file:/etc/shadow`: every file the tool reads on a manifest's behalf (the YAML files themselves,
design-document folders, `file:` secrets) resolves, symbolic links included, inside the folder given
on the command line, or inside a folder the command line names explicitly (`--secrets-dir`).
What is not a regular file or folder is refused before it is opened: reading a named pipe blocks
until someone writes to it, and a device file (`/dev/zero`) never ends.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Sequence


# Folder levels below the manifest folder. Real layouts use a handful (teams/, design/NAME/views/NAME/); a tree
# thousands deep is an attack on the walk itself (every system call resolves the whole path again).
MAX_FOLDER_DEPTH = 30


class PathRefused(Exception):
    """A path a manifest may not use: what is wrong with it and how to fix it (never its content)."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Roots:
    """The folders files may come from: the manifest folder, then any `--secrets-dir` (for secrets only)."""

    manifests: str  # resolved
    secrets: tuple[str, ...] = ()  # resolved

    @classmethod
    def of(cls, folder_or_file: str, secrets_dirs: Sequence[str] = ()) -> "Roots":
        folder = folder_or_file if os.path.isdir(folder_or_file) else os.path.dirname(folder_or_file) or "."
        return cls(os.path.realpath(folder), tuple(os.path.realpath(d) for d in secrets_dirs))


def inside(real: str, folder: str) -> bool:
    return real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)


def check(path: str, roots: Sequence[str], *, folder: bool = False, outside_hint: str,
          max_bytes: int | None = None, in_checked_folder: bool = False) -> os.stat_result:
    """The stat of `path` when it is a regular file (a folder when `folder`) resolving inside one of `roots`;
    PathRefused otherwise. Never opens it. `in_checked_folder`: the folder holding `path` resolves inside
    `roots` already, so only a link can lead out (resolving every entry of a deep tree costs O(depth) each)."""
    if not in_checked_folder or os.path.islink(path):
        confine(path, roots, outside_hint)
    info = usable(path, folder=folder, max_bytes=max_bytes)
    if folder and os.path.relpath(os.path.realpath(path), roots[0]).count(os.sep) >= MAX_FOLDER_DEPTH:
        raise PathRefused(f"{os.path.normpath(path)} is nested more than {MAX_FOLDER_DEPTH} folders deep in the "
                          "manifest folder", "flatten the folders")
    return info


def confine(path: str, roots: Sequence[str], outside_hint: str) -> None:
    """PathRefused when `path`, resolved (links included, whether or not it exists), is outside all `roots`.
    Checked first: whether a path outside exists is none of the manifest's business."""
    real = os.path.realpath(path)
    if not any(inside(real, root) for root in roots):
        link = " (through a symbolic link)" if real != os.path.abspath(path) else ""
        raise PathRefused(f"{os.path.normpath(path)} is outside the manifest folder{link}", outside_hint)


def usable(path: str, *, folder: bool = False, max_bytes: int | None = None) -> os.stat_result:
    """The stat of `path` when it is a regular file (a folder when `folder`), not a loop, at most `max_bytes`
    long; PathRefused otherwise. Never opens it."""
    shown = os.path.normpath(path)
    try:
        info = os.stat(path)  # follows links, opens nothing
    except OSError as error:
        raise _unusable(path, shown, error) from None
    if stat.S_ISDIR(info.st_mode) and os.path.islink(path):
        parent = os.path.realpath(os.path.dirname(path) or ".")
        if inside(parent, os.path.realpath(path)):
            raise PathRefused(f"{shown} is a link to a folder that contains it (a loop)",
                              "remove the link, or replace it by the folder it should hold")
    wanted = stat.S_ISDIR if folder else stat.S_ISREG
    if not wanted(info.st_mode):
        raise PathRefused(f"{shown} is {_what(info.st_mode)}, not a {'folder' if folder else 'regular file'}",
                          "replace it by a " + ("folder" if folder else "regular file") +
                          (" (reading a pipe or a device could block or never end)" if _special(info.st_mode) else ""))
    if max_bytes is not None and info.st_size > max_bytes:
        raise PathRefused(f"{shown} is {info.st_size:,} bytes, above the {max_bytes:,}-byte limit", "use a smaller file")
    return info


def _unusable(path: str, shown: str, error: OSError) -> PathRefused:
    if error.errno == errno.ELOOP:
        return PathRefused(f"{shown} is a symbolic link that loops (it leads back to itself)",
                           "point the link at a real file, or replace it by the file")
    if error.errno == errno.ENOENT and os.path.islink(path):
        return PathRefused(f"{shown} is a symbolic link to {os.readlink(path)}, which does not exist",
                           "fix the link or remove it")
    if error.errno == errno.ENOENT:
        return PathRefused(f"{shown} does not exist", "create it or fix the path")
    return PathRefused(f"cannot use {shown} ({error.strerror})", "fix its permissions or the path")


def _special(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode)


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a regular file"
