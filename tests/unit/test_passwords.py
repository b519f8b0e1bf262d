"""Offline password checks against CouchDB's stored forms.

Relied on: apache/couchdb src/couch/src/couch_passwords.erl (hash_admin_password/2 writes
"-pbkdf2:PRF-KEY,SALT,ITER"; get_unhashed_admins/0 lists the legacy "-pbkdf2-" and "-hashed-"
forms), docs/couchdb.md (the salt is used as its hex string, checked on 3.4.3),
and the published admin value of the couch-hash-pwd npm README
(`couch-hash-pwd -p mysecret` -> "-pbkdf2-515d6a87...,88b2a627...,10"), an independent vector.
"""

import hashlib

import pytest

from couch_reconciler.passwords import admin_hash, hash_admin_password, user_hash, verify_all, written_by_this_tool

LEGACY_ADMIN = "-pbkdf2-515d6a879832819863e12475ad0bb6f03abb7f8e,88b2a6274f9ebeb3e2928a86382590ec,10"


def couch_user_doc(password: str, salt: str = "0f" * 16, iterations: int = 1000) -> dict:
    """A `_users` doc as CouchDB 3.4 stores it after hashing `password`."""
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode("ascii"), iterations).hex()
    return {"_id": "org.couchdb.user:ann", "name": "ann", "type": "user", "roles": [],
            "password_scheme": "pbkdf2", "pbkdf2_prf": "sha256", "iterations": iterations,
            "salt": salt, "derived_key": derived}


def test_legacy_admin_hash_from_an_independent_tool_verifies():
    assert admin_hash(LEGACY_ADMIN).verifies("mysecret")
    assert not admin_hash(LEGACY_ADMIN).verifies("mysecret2")


def test_user_doc_verifies_only_its_own_password():
    doc = couch_user_doc("s3cret-ü")
    assert user_hash(doc).verifies("s3cret-ü")
    assert not user_hash(doc).verifies("s3cret-u")


def test_user_without_stored_password_has_no_hash():
    assert user_hash({"name": "bob", "roles": []}) is None


def test_simple_scheme_user_verifies():
    doc = {"password_scheme": "simple", "salt": "abc",
           "password_sha": hashlib.sha1(b"pw" + b"abc").hexdigest()}
    assert user_hash(doc).verifies("pw")
    assert not user_hash(doc).verifies("pw2")


def test_admin_hash_has_couchdb_format_and_fresh_salt():
    first = hash_admin_password("pw", iterations=1000)
    second = hash_admin_password("pw", iterations=1000)
    assert first != second  # a new salt every time
    derived, salt, iterations = first.removeprefix("-pbkdf2:sha256-").split(",")
    assert len(derived) == 64 and derived == derived.lower()
    # CouchDB's 32 hex digits after a prefix that says who wrote it (ownership.py), never CouchDB's own form
    assert salt.startswith("couch-reconciler-") and len(salt.removeprefix("couch-reconciler-")) == 32
    assert iterations == "1000"
    assert written_by_this_tool(first) and not written_by_this_tool("-pbkdf2:sha256-ab,0123456789abcdef,10")
    assert derived == hashlib.pbkdf2_hmac("sha256", b"pw", salt.encode("ascii"), 1000).hex()
    assert admin_hash(first).verifies("pw") and not admin_hash(first).verifies("pW")


def test_plaintext_admin_value_not_yet_hashed_verifies_by_equality():
    assert admin_hash("letmein").verifies("letmein")
    assert not admin_hash("letmein").verifies("letmein ")


@pytest.mark.parametrize("value", ["-pbkdf2:md4-00,aa,10", "-pbkdf2:sha256-zz,aa,10"])
def test_malformed_or_unknown_prf_never_verifies(value):
    assert not admin_hash(value).verifies("00")


def test_verify_all_keeps_input_order():
    docs = [couch_user_doc(f"pw{i}") for i in range(5)]
    checks = [(user_hash(doc), f"pw{i if i % 2 else i + 1}") for i, doc in enumerate(docs)]
    assert verify_all(checks) == [False, True, False, True, False]


def test_a_pair_verified_before_is_answered_without_deriving_again(monkeypatch):
    """`reconcile watch` plans over and over: unchanged hashes and secrets must not cost 600k rounds each time."""
    docs = [couch_user_doc(f"pw-{i}") for i in range(3)]
    checks = [(user_hash(doc), f"pw-{i}") for i, doc in enumerate(docs)]
    assert verify_all(checks) == [True, True, True]
    derived = []
    real = hashlib.pbkdf2_hmac
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", lambda *args: derived.append(args) or real(*args))

    again = verify_all(checks + [(user_hash(docs[0]), "rotated")])

    assert again == [True, True, True, False]
    assert len(derived) == 1  # only the new secret was derived
