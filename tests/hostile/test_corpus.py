"""Hostile manifest folders through `validate`, `plan` and `apply`: refused with `file:line` lines, exit 1,
no traceback, no hang, and nothing sent to the server.

Each case is a folder under cases/NAME/: `manifests/` is the folder given to the commands (run from
cases/NAME/, so messages name `manifests/...`), siblings such as `outside/` are what a manifest must not
reach, and `expected.txt` holds the exact lines plan and apply print before their summary. `validate` is
offline and may run where the deployment's secrets are not (README: "Which command checks what"), so a
case whose only problem is a secret it cannot read has `expected-validate.txt` (what validate prints,
exit 0 when it is empty) beside it. Symlinks, FIFOs, sockets, device files, huge and deep files cannot live in Git:
`MAKE` adds them to the copy each test runs on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import signal
import socket
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner

from couch_reconciler.cli import main

CASES = Path(__file__).parent / "cases"
NAMES = sorted(path.name for path in CASES.iterdir() if path.is_dir())
COMMANDS = {"validate": ["validate", "manifests"], "plan": ["plan", "manifests"],
            "apply": ["apply", "--auto-approve", "manifests"]}
SECONDS_PER_CASE = 5
SUMMARY_END = "nothing was sent to any server"
FILE_LINE = r"^\S+?:\d+: "
DEEP = 20_000


def _symlink(link: str, target: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / link
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target.replace("{root}", str(root)), path)
    return make


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda root: os.mkfifo(root / name)


def _device(name: str) -> Callable[[Path], None]:
    """/dev/null's twin inside the folder (a character device; creating one needs root, which the tests
    get in CI and in the container; elsewhere the case is skipped, saying so)."""
    def make(root: Path) -> None:
        try:
            os.mknod(root / name, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device file needs root (mknod); the other special-file cases still run")
    return make


def _socket(name: str) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / name
        here = os.getcwd()
        os.chdir(path.parent)  # a socket's path is limited to 107 bytes: bind the bare name
        try:
            server = socket.socket(socket.AF_UNIX)
            server.bind(path.name)
            server.close()  # the socket file stays
        finally:
            os.chdir(here)
    return make


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return make


def _sparse(name: str, size: int) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        with open(root / name, "wb") as handle:
            handle.truncate(size)  # costs no disk and no time
    return make


def _deep_folders(root: Path) -> None:
    folder = root / "manifests/design/app/lib"
    for _ in range(200):  # os.makedirs recurses once per level
        folder /= "d"
        folder.mkdir(parents=True)
    (folder / "f.js").write_text("exports.f = 1;\n")


def _absolute_reference(yaml_file: str, text: str) -> Callable[[Path], None]:
    return lambda root: _write(yaml_file, text.replace("{outside}", str(root / "outside")).encode())(root)


def _env(name: str, value: str | None) -> Callable[[pytest.MonkeyPatch], None]:
    def set_it(monkeypatch: pytest.MonkeyPatch) -> None:
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return set_it


def _flow_list(depth: int) -> bytes:
    return (("apiVersion: reconciler/v1\nkind: User\nmetadata:\n  name: alice\nspec:\n  fields:\n    deep: "
             + "[" * depth + "]" * depth + "\n").encode())


def _flow_mapping(depth: int) -> bytes:
    return (("apiVersion: reconciler/v1\nkind: User\nmetadata:\n  name: alice\nspec:\n  fields:\n    deep: "
             + "{a: " * depth + "1" + "}" * depth + "\n").encode())


def _block_mapping(depth: int) -> bytes:
    lines = ["apiVersion: reconciler/v1", "kind: User", "metadata:", "  name: alice", "spec:", "  fields:"]
    lines += [" " * (4 + level) + "a:" for level in range(depth)]
    return ("\n".join(lines) + " 1\n").encode()


def _block_list(depth: int) -> bytes:
    return (("apiVersion: reconciler/v1\nkind: User\nmetadata:\n  name: alice\nspec:\n  fields:\n    deep:\n"
             + "      " + "- " * depth + "x\n").encode())


USER_ABSOLUTE = ("apiVersion: reconciler/v1\nkind: User\nmetadata:\n  name: alice\nspec:\n"
                 "  password: file:{outside}/leak.txt\n")
DDOC_ABSOLUTE = ("apiVersion: reconciler/v1\nkind: DesignDocument\nmetadata:\n  name: app\nspec:\n"
                 "  database: canary-db\n  path: {outside}/ddoc\n")
APP = "manifests/design/app"

# What Git cannot hold, added to the case's copy before the commands run.
MAKE: dict[str, Callable[[Path], None]] = {
    "ddoc-path-symlink-out": _symlink(APP, "../../outside/ddoc"),
    "ddoc-file-symlink-out": _symlink(f"{APP}/views/ok/map.js", "../../../../../outside/leak.js"),
    "ddoc-attachment-symlink-out": _symlink(f"{APP}/_attachments/id_rsa", "../../../../outside/id_rsa"),
    "ddoc-folder-symlink-out": _symlink(f"{APP}/lib", "../../../outside/lib"),
    "ddoc-symlink-self": _symlink(f"{APP}/views/ok/map.js", "map.js"),
    "ddoc-folder-symlink-loop": _symlink(f"{APP}/views/loop", ".."),
    "ddoc-dangling-symlink": _symlink(f"{APP}/views/ok/map.js", "nowhere.js"),
    "ddoc-fifo": _fifo(f"{APP}/views/ok/map.js"),
    "ddoc-attachment-fifo": lambda root: (os.makedirs(root / APP / "_attachments"),
                                          os.mkfifo(root / APP / "_attachments/logo.png")),
    "ddoc-device": _device(f"{APP}/views/ok/map.js"),
    "ddoc-socket": _socket(f"{APP}/validate_doc_update.js"),
    "ddoc-path-absolute": _absolute_reference("manifests/app.yaml", DDOC_ABSOLUTE),
    "ddoc-huge-file": _sparse(f"{APP}/views/ok/map.js", 50 * 1024 * 1024),
    "ddoc-deep-folders": _deep_folders,
    "ddoc-binary-function": _write(f"{APP}/views/ok/map.js", b"function (doc) { emit(\xff\xfe); }\n"),
    "secret-file-not-utf8": _write("manifests/alice.password", b"caf\xe9\n"),
    "secret-file-huge": _sparse("manifests/alice.password", 50 * 1024 * 1024),
    "secret-file-fifo": _fifo("manifests/alice.password"),
    "secret-file-device": _device("manifests/alice.password"),
    "secret-file-socket": _socket("manifests/alice.password"),
    "secret-file-symlink-self": _symlink("manifests/alice.password", "alice.password"),
    "secret-file-dangling-symlink": _symlink("manifests/alice.password", "gone.password"),
    "secret-file-absolute": _absolute_reference("manifests/users.yaml", USER_ABSOLUTE),
    "secret-file-symlink-out": _symlink("manifests/alice.password", "../outside/leak.txt"),
    "yaml-fifo": _fifo("manifests/a.yaml"),
    "yaml-device": _device("manifests/a.yaml"),
    "yaml-socket": _socket("manifests/a.yaml"),
    "yaml-symlink-self": _symlink("manifests/a.yaml", "a.yaml"),
    "yaml-dangling-symlink": _symlink("manifests/a.yaml", "gone.yaml"),
    "yaml-symlink-out": _symlink("manifests/other.yaml", "../outside/other.yaml"),
    "yaml-folder-symlink-loop": _symlink("manifests/team/again", ".."),
    "yaml-folder-symlink-out": _symlink("manifests/more", "../outside/more"),
    "yaml-deep-flow-list": _write("manifests/user.yaml", _flow_list(DEEP)),
    "yaml-deep-flow-mapping": _write("manifests/user.yaml", _flow_mapping(DEEP)),
    "yaml-deep-block-mapping": _write("manifests/user.yaml", _block_mapping(3_000)),
    "yaml-deep-block-list": _write("manifests/user.yaml", _block_list(3_000)),
    "yaml-deep-but-parseable": _write("manifests/user.yaml", _flow_list(900)),
    "yaml-huge-file": _sparse("manifests/huge.yaml", 50 * 1024 * 1024),
    "yaml-megabyte-name": _write("manifests/huge-name.yaml", (
        "apiVersion: reconciler/v1\nkind: Database\nmetadata:\n  name: " + "a" * 1024 * 1024 + "\nspec: {}\n").encode()),
}
ENVIRONMENT: dict[str, list[Callable[[pytest.MonkeyPatch], None]]] = {
    "secret-env-unset": [_env("HOSTILE_UNSET_PASSWORD", None)],
    "secret-env-empty": [_env("HOSTILE_EMPTY_PASSWORD", "")],
    "secret-server-admin-env-unset": [_env("HOSTILE_UNSET_PASSWORD", None)],
    "secret-userdatabases-env-unset": [_env("HOSTILE_UNSET_PASSWORD", None)],
    "secret-many-at-once": [_env("HOSTILE_UNSET_PASSWORD", None), _env("HOSTILE_EMPTY_PASSWORD", "")],
}


class TookTooLong(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """A hang (a FIFO opened for reading, a loop) fails the test after `seconds` instead of blocking the
    suite: SIGALRM interrupts even a blocking open()."""
    def expire(signum: int, frame: object) -> None:
        raise TookTooLong(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def prepare(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / name
    shutil.copytree(CASES / name, root)
    MAKE.get(name, lambda root: None)(root)
    for set_env in ENVIRONMENT.get(name, []):
        set_env(monkeypatch)
    monkeypatch.chdir(root)
    return root


def remove_tree(top: Path) -> None:
    """shutil.rmtree recurses once per level: 1,100 nested folders would end in RecursionError (pytest's own
    clean-up of old temporary folders too), so the cases are removed with an explicit stack."""
    folders, pending = [], [str(top)]
    while pending:
        folder = pending.pop()
        folders.append(folder)
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            else:
                os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


@pytest.fixture
def case_folder(tmp_path: Path):
    yield tmp_path
    os.chdir(tmp_path.parent)
    remove_tree(tmp_path)


def expected_lines(name: str, command: str, root: Path) -> tuple[int, list[str]]:
    """The exit status and stderr lines (summary aside) `command` must give; `{root}` in a file stands for the
    case's folder, which a manifest naming an absolute path has to spell out."""
    validate_only = CASES / name / "expected-validate.txt"
    file = validate_only if command == "validate" and validate_only.exists() else CASES / name / "expected.txt"
    lines = file.read_text(encoding="utf-8").replace("{root}", str(root)).splitlines()
    return (1 if lines else 0), lines


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", NAMES)
def test_hostile_case_is_refused_with_file_line_and_nothing_sent(name, command, case_folder, monkeypatch, tripwire):
    root = prepare(name, case_folder, monkeypatch)
    status, expected = expected_lines(name, command, root)

    with time_limit(SECONDS_PER_CASE):
        result = CliRunner().invoke(main, COMMANDS[command])

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert tripwire.writes == [], "a write reached the server"
    assert tripwire.received == [], "a request reached the server"
    lines = result.stderr.splitlines()
    if status == 0:
        assert (result.exit_code, lines) == (0, expected)
        return
    assert result.exit_code == 1
    *diagnostics, summary = lines
    assert diagnostics == expected
    assert summary.endswith(SUMMARY_END)
    assert result.stdout == ""


@pytest.mark.parametrize("name", NAMES)
def test_every_expected_line_names_file_and_line(name):
    lines = (CASES / name / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        assert re.match(FILE_LINE, line), line


def test_the_corpus_is_large_enough():
    assert len(NAMES) >= 60


def test_every_special_file_belongs_to_a_case():
    assert set(MAKE) | set(ENVIRONMENT) <= set(NAMES)


@pytest.mark.parametrize("name", ["yaml-fifo", "yaml-deep-flow-list", "ddoc-folder-symlink-loop"])
def test_the_installed_command_neither_hangs_nor_prints_a_traceback(name, case_folder, monkeypatch):
    """The same through the console script, in its own process: a hang is killed by the timeout."""
    root = prepare(name, case_folder, monkeypatch)
    command = [str(Path(sys.executable).with_name("reconcile")), *COMMANDS["validate"]]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=SECONDS_PER_CASE * 4)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[:-1] == expected_lines(name, "plan", root)[1]
