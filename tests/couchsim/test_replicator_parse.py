"""How couchsim's replicator reads a replication document: endpoints, credentials, options, replication id.

Sources: src/docs/src/replication/replicator.rst ("Specifying Usernames and Passwords": auth.basic, then URL
userinfo, then an Authorization header); couch_replicator_parse.erl (parse_rep_db/3: trailing slash,
convert_options/1: doc_ids are percent-decoded and de-duplicated); couch_replicator_ids.erl (version 4: the
user but not the password is part of the id; `+continuous`, `+create_target` suffixes; filters change it).
"""
import base64

import pytest

from couch_reconciler.couchsim.replication.rep import BadRepDoc, parse_rep_doc, replication_id


def rep(**overrides):
    body = {"source": "http://h:5984/src", "target": "http://h:5984/tgt"}
    body.update(overrides)
    return parse_rep_doc(body)


def rep_id(**overrides) -> str:
    parsed = rep(**overrides)
    return "".join(replication_id(parsed, "server-uuid"))


def test_credentials_come_from_auth_basic_then_userinfo_then_the_header():
    header = {"Authorization": "Basic " + base64.b64encode(b"hdr:hpw").decode()}
    both = rep(source={"url": "http://url:upw@h/src", "headers": header,
                       "auth": {"basic": {"username": "obj", "password": "opw"}}}).source
    assert (both.username, both.password, both.url, both.headers) == ("obj", "opw", "http://h/src/", {})
    url_only = rep(source={"url": "http://url:upw@h/src", "headers": header}).source
    assert (url_only.username, url_only.password) == ("url", "upw")
    header_only = rep(source={"url": "http://h/src", "headers": header}).source
    assert (header_only.username, header_only.password) == ("hdr", "hpw")


def test_local_endpoints_are_not_replication_documents():
    with pytest.raises(BadRepDoc) as refused:
        rep(target="tgt")
    assert refused.value.reason == "local_endpoints_not_supported"


def test_doc_ids_are_decoded_and_deduplicated():
    assert rep(doc_ids=["b%2Fc", "a", "a"]).doc_ids == ["a", "b/c"]


def test_the_password_is_not_part_of_the_replication_id_but_the_user_and_options_are():
    base = rep_id(source="http://u:one@h:5984/src")
    assert rep_id(source="http://u:two@h:5984/src") == base
    assert rep_id(source="http://v:one@h:5984/src") != base
    assert rep_id(source="http://u:one@h:5984/src", continuous=True, create_target=True) == base + "+continuous+create_target"
    assert rep_id(source="http://u:one@h:5984/src", doc_ids=["a"]) != base
    # Port 5984 is CouchDB's default and does not count; another port does.
    assert rep_id(source="http://u:one@h/src") == base
    assert rep_id(source="http://u:one@h:6000/src") != base


def test_a_filter_id_depends_on_the_filter_code():
    parsed = rep(filter="app/keep")
    assert replication_id(parsed, "uuid", "function(doc) { return true; }") != \
        replication_id(parsed, "uuid", "function(doc) { return false; }")
