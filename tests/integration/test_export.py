"""`reconcile export`: adopt a live deployment; a plan on what it wrote shows no change.

Relied on: docs/couchdb.md (a new database's `_security` reads back admin-only,
`{}` makes it public; a stored user has pbkdf2 fields and no `password`; config reads back as
strings), and what export must leave out: users' secrets, config equal to the defaults.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import yaml
from reconcile_runner import reconcile

SECRETS = ("bob-password", "derived_key", "salt", "-pbkdf2")


@pytest.fixture
def deployment(couch, http, unique):
    """A server set up by hand, the way a team adopting the tool finds it."""
    base = couch.url
    orders, public, events, bob = unique("orders"), unique("public"), unique("events"), unique("bob")
    for name in (orders, public, events):
        assert http.put(f"{base}/{name}", params={"partitioned": str(name == events).lower()}).status_code == 201
    assert http.put(f"{base}/{orders}/_security", json={"members": {"roles": ["clerks"], "names": [bob]},
                                                        "admins": {"names": ["carol"]}}).status_code == 200
    assert http.put(f"{base}/{public}/_security", json={}).status_code == 200
    doc = {"name": bob, "type": "user", "roles": ["clerks", "auditors"], "password": "bob-password",
           "email": "bob@example.com"}
    assert http.put(f"{base}/_users/org.couchdb.user:{bob}", json=doc).status_code == 201
    node = http.get(f"{base}/_membership").json()["cluster_nodes"][0]
    # delete_dbs differs from CouchDB's default; enable is set to its default value.
    settings = {f"{base}/_node/{node}/_config/couch_peruser/{key}": value
                for key, value in (("delete_dbs", "true"), ("enable", "false"))}
    before = {url: http.get(url) for url in settings}
    for url, value in settings.items():
        assert http.put(url, json=value).status_code == 200
    yield {"public": public}
    for url, answer in before.items():  # a real server is left as found
        if answer.status_code == 200:
            http.put(url, json=answer.json())
        else:
            http.delete(url)


def test_exported_folder_validates_and_plans_no_change(couch, deployment, tmp_path):
    out = tmp_path / "adopted"

    exported = reconcile(couch, "export", str(out))

    assert exported.code == 0, exported.stderr
    assert sorted(path.name for path in out.iterdir()) == \
        ["README.md", "config.yaml", "databases.yaml", "roles.yaml", "users.yaml"]
    assert reconcile(couch, "validate", str(out)).code == 0
    databases = {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all((out / "databases.yaml").read_text())}
    assert databases[deployment["public"]] == {"security": {"public": True}}  # declared public, not left out
    planned = reconcile(couch, "plan", "--detailed-exitcode", str(out))
    assert planned.code == 0, planned.stdout + planned.stderr
    assert "No changes" in planned.stdout


def test_export_holds_no_secret_and_says_how_to_manage_passwords(couch, deployment, tmp_path):
    out = tmp_path / "adopted"

    exported = reconcile(couch, "export", str(out))

    assert exported.code == 0, exported.stderr
    texts = {path.name: path.read_text() for path in out.iterdir()}
    for text in [*texts.values(), exported.stdout, exported.stderr]:
        assert not any(secret in text for secret in SECRETS)
    assert "email: bob@example.com" in texts["users.yaml"]
    assert "password: env:" in texts["README.md"]
    assert f"`{couch.user}`" in texts["README.md"]  # server admins: listed, not exported
    assert f"- `{deployment['public']}`" in texts["README.md"]  # public: listed for a reviewer to confirm


def test_export_never_overwrites_manifests(couch, deployment, tmp_path):
    (tmp_path / "users.yaml").write_text("# mine\n")

    refused = reconcile(couch, "export", str(tmp_path))

    assert refused.code == 1
    assert refused.stderr.strip().endswith("export into an empty folder (it never overwrites manifests)")
    assert (tmp_path / "users.yaml").read_text() == "# mine\n"


def test_only_config_differing_from_defaults_is_exported(couch, deployment, tmp_path):
    out = tmp_path / "adopted"

    assert reconcile(couch, "export", str(out)).code == 0

    config = (out / "config.yaml").read_text()
    assert "delete_dbs: 'true'" in config
    assert "enable:" not in config  # set, but to CouchDB's default
    assert "admins" not in config and "uuid" not in config


def test_couch_peruser_databases_are_left_to_a_user_databases_template(couch, http, unique, tmp_path):
    """docs/couchdb.md: with couch_peruser on, each user gets `userdb-<hex of the name>` within ~250 ms."""
    if couch.real:
        pytest.skip("turning couch_peruser on makes a database for every user of a shared real server")
    node = http.get(f"{couch.url}/_membership").json()["cluster_nodes"][0]
    assert http.put(f"{couch.url}/_node/{node}/_config/couch_peruser/enable", json="true").status_code == 200
    name = unique("dora")
    doc = {"name": name, "type": "user", "roles": [], "password": "dora-pw"}
    assert http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json=doc).status_code == 201
    userdb = "userdb-" + name.encode().hex()
    deadline = time.monotonic() + 10
    while http.get(f"{couch.url}/{userdb}").status_code != 200:
        assert time.monotonic() < deadline, "couch_peruser made no database"
        time.sleep(0.05)
    out = tmp_path / "adopted"

    exported = reconcile(couch, "export", str(out))

    assert exported.code == 0, exported.stderr
    assert not (out / "databases.yaml").exists()
    template = yaml.safe_load((out / "user-databases.yaml").read_text())
    assert template["kind"] == "UserDatabases" and template["spec"]["prefix"] == "userdb-"
    assert not (out / "users.yaml").exists() or name not in (out / "users.yaml").read_text()
    assert "1 user is left to it" in (out / "README.md").read_text()
    planned = reconcile(couch, "plan", "--detailed-exitcode", str(out))
    assert planned.code == 0, planned.stdout + planned.stderr


def test_config_a_manifest_cannot_name_is_listed_instead_of_breaking_validate(couch, http, tmp_path):
    if couch.real:
        pytest.skip("adds a [vhosts] entry, which would reroute requests on a shared real server")
    node = http.get(f"{couch.url}/_membership").json()["cluster_nodes"][0]
    key = f"{couch.url}/_node/{node}/_config/vhosts/" + quote("example.com/app", safe="")
    assert http.put(key, json="/app").status_code == 200
    out = tmp_path / "adopted"

    assert reconcile(couch, "export", str(out)).code == 0

    assert "- `[vhosts] example.com/app`" in (out / "README.md").read_text()
    assert reconcile(couch, "validate", str(out)).code == 0


def test_couchdb_fields_of_a_user_document_are_not_exported(couch, http, unique, tmp_path):
    """An attachment on a user document (an avatar, say) is CouchDB's `_attachments`, which no manifest may name."""
    name = unique("eve")
    doc = {"name": name, "type": "user", "roles": [], "password": "eve-pw", "nick": "e",
           "_attachments": {"avatar.txt": {"content_type": "text/plain", "data": "aGk="}}}
    assert http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json=doc).status_code == 201
    out = tmp_path / "adopted"

    assert reconcile(couch, "export", str(out)).code == 0

    users = (out / "users.yaml").read_text()
    assert "nick: e" in users and "_attachments" not in users and "_rev" not in users
    assert reconcile(couch, "validate", str(out)).code == 0
    assert "No changes" in reconcile(couch, "plan", str(out)).stdout


def test_a_user_no_manifest_may_declare_is_listed_not_exported(couch, http, unique, request, tmp_path):
    name = unique("frank") + " "  # CouchDB takes a trailing space; validate refuses it in a manifest
    doc = {"name": name, "type": "user", "roles": [], "password": "frank-pw"}
    url = f"{couch.url}/_users/{quote('org.couchdb.user:' + name)}"
    created = http.put(url, json=doc)
    assert created.status_code == 201
    request.addfinalizer(lambda: http.delete(url, params={"rev": http.get(url).json()["_rev"]}))
    out = tmp_path / "adopted"

    assert reconcile(couch, "export", str(out)).code == 0

    assert f"- `{name}`" in (out / "README.md").read_text()
    assert reconcile(couch, "validate", str(out)).code == 0
