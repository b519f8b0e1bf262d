"""Loading manifests: every key remembers its line; YAML's silent surprises become errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from couch_reconciler import load as load_module
from couch_reconciler.errors import ReconcileError
from couch_reconciler.load import Source, load, load_file
from couch_reconciler.secrets import SecretRef, SecretRefError

DOC = """\
# comment
apiVersion: reconciler/v1
kind: Database
metadata:
  name: orders
spec:
  security:
    members:
      roles:
        - app-user
        - _admin
"""


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_key_path_has_its_line(tmp_path):
    [manifest] = load_file(write(tmp_path, "db.yaml", DOC))
    assert manifest.source == Source(str(tmp_path / "db.yaml"), 2)
    assert manifest.where("metadata", "name").line == 5
    assert manifest.where("spec", "security", "members", "roles", 1).line == 11
    # A path the document lacks points at its deepest written ancestor.
    assert manifest.where("spec", "security", "admins", "roles").line == 7


def test_folders_are_read_recursively_in_order_and_multi_document(tmp_path):
    write(tmp_path, "b/two.yml", DOC.replace("orders", "b2") + "---\n" + DOC.replace("orders", "b3") + "---\n")
    write(tmp_path, "a.yaml", DOC.replace("orders", "a1"))
    write(tmp_path, "notes.txt", "not a manifest")
    write(tmp_path, ".git/config.yaml", "ignored: true")
    loaded = load(str(tmp_path))
    assert loaded.errors == []
    assert [m.name for m in loaded.manifests] == ["a1", "b2", "b3"]
    assert loaded.manifests[2].source.line == 14  # counted from the top of the file, past the first document


def test_merge_keys_fill_only_what_the_mapping_does_not_set(tmp_path):
    text = DOC.replace("    members:\n", "    members: &members\n") + \
        "        - ops\n    admins:\n      <<: *members\n      names: [root]\n"
    text = text.replace("        - ops\n", "      names: [ops]\n")
    [manifest] = load_file(write(tmp_path, "db.yaml", text))
    assert manifest.spec["security"]["admins"] == {"roles": ["app-user", "_admin"], "names": ["root"]}
    assert manifest.where("spec", "security", "admins", "names").line == 15


def test_a_recursive_alias_is_refused(tmp_path):
    file = write(tmp_path, "db.yaml", "a: &a\n  b: *a\n")
    with pytest.raises(ReconcileError, match=r"db.yaml:1: an alias refers to a value that contains it"):
        load_file(file)


def test_keys_stay_the_text_written(tmp_path):
    """YAML 1.1 reads `on:` as true; a config key `on` must stay the text "on"."""
    [manifest] = load_file(write(tmp_path, "c.yaml", "apiVersion: reconciler/v1\nkind: NodeConfig\nmetadata:\n"
                                 "  name: x\nspec:\n  section: s\n  values:\n    on: yes\n    1: 2\n"))
    assert manifest.spec["values"] == {"on": True, "1": 2}


def test_oversized_files_are_refused_without_being_read(tmp_path, monkeypatch):
    file = tmp_path / "huge.yaml"
    with open(file, "wb") as handle:
        handle.truncate(load_module.MAX_FILE_BYTES + 1)

    def no_reading(*args, **kwargs):
        raise AssertionError("the oversized file was opened")

    monkeypatch.setattr(load_module, "open", no_reading, raising=False)
    with pytest.raises(ReconcileError, match="above the 10 MiB limit"):
        load_file(str(file))


def test_problems_in_one_file_do_not_hide_the_others(tmp_path):
    write(tmp_path, "a.yaml", "a:\n\tb: 1\n")
    write(tmp_path, "b.yaml", DOC)
    write(tmp_path, "c.yaml", "")
    loaded = load(str(tmp_path))
    assert [m.name for m in loaded.manifests] == ["orders"]
    assert [(Path(e.source.file).name, e.source.line) for e in loaded.errors] == [("a.yaml", 2), ("c.yaml", 1)]


# ---------------------------------------------------------------- secrets


def test_env_reference_resolves_and_names_only_the_variable_when_missing(monkeypatch):
    ref = SecretRef.parse("env:ALICE_PASSWORD", ".")
    monkeypatch.setenv("ALICE_PASSWORD", "s3cret-value")
    assert ref.resolve() == "s3cret-value"
    monkeypatch.delenv("ALICE_PASSWORD")
    with pytest.raises(ReconcileError, match=r"^secret env:ALICE_PASSWORD: the environment variable ALICE_PASSWORD "
                                             r"is not set"):
        ref.resolve()


def test_file_reference_is_relative_to_the_manifest_folder(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "alice").write_text("pa:ss word\n", encoding="utf-8")
    assert SecretRef.parse("file:secrets/alice", str(tmp_path)).resolve() == "pa:ss word"
    with pytest.raises(ReconcileError, match=r"^secret file:secrets/bob: .*secrets/bob does not exist; "
                                             r"create it or fix the path"):
        SecretRef.parse("file:secrets/bob", str(tmp_path)).resolve()


def test_an_empty_secret_is_refused(monkeypatch):
    monkeypatch.setenv("EMPTY_SECRET", "")
    with pytest.raises(ReconcileError, match="^secret env:EMPTY_SECRET: the environment variable EMPTY_SECRET is empty"):
        SecretRef.parse("env:EMPTY_SECRET", ".").resolve()


@pytest.mark.parametrize("text", ["hunter2", "env:", "env:has space", "file:", "vault:kv/alice"])
def test_malformed_references_never_echo_what_was_written(text):
    with pytest.raises(SecretRefError) as caught:
        SecretRef.parse(text, ".")
    if text not in ("env:", "file:"):
        assert text not in str(caught.value)


def test_a_reference_repr_holds_no_value(monkeypatch):
    monkeypatch.setenv("ALICE_PASSWORD", "s3cret-value")
    ref = SecretRef.parse("env:ALICE_PASSWORD", ".")
    ref.resolve()
    assert "s3cret-value" not in repr(ref)
