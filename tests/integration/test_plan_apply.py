"""plan and apply end to end: saved plans, thresholds, secrets, confirmation and server errors.

Relied on: Terraform's plan/apply contract (exit codes of `--detailed-exitcode`; a plan file holds no secret and a
stale one is refused; thresholds like octoDNS's MAX_SAFE_UPDATE_PCENT; one line per error,
exit 1, no traceback, a rerun converges) and docs/couchdb.md (stored users keep
no `password`: a secret can only leak through our own output).
"""

from __future__ import annotations

import json
import re

import pytest

from reconcile_runner import assert_no_secret, reconcile, write

USER_PASSWORD = "pw-of-alice-7f3a"


def databases(names: list[str], roles: str = "[app-user]") -> str:
    documents = [f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {name}}}
    spec:
      security: {{members: {{roles: {roles}}}}}
    """ for name in names]
    return "---".join(documents + ["""
    apiVersion: reconciler/v1
    kind: Role
    metadata: {name: app-user}
    spec: {}
    """, """
    apiVersion: reconciler/v1
    kind: Role
    metadata: {name: other}
    spec: {}
    """])


def test_a_saved_plan_applies_exactly_and_a_stale_one_is_refused(couch, unique, tmp_path):
    first, second = unique("a"), unique("b")
    write(tmp_path / "m", "dbs.yaml", databases([first]))
    planfile = tmp_path / "plan.json"
    planned = reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(planfile), "--detailed-exitcode")
    assert planned.code == 2
    document = json.loads(planfile.read_text())
    assert [(c["action"], c["kind"], c["key"]) for c in document["changes"]] == [
        ("create", "database", first), ("create", "security", first)]

    # The folder changes after the plan: apply PLANFILE does what was reviewed, not what the folder says now.
    write(tmp_path / "m", "dbs.yaml", databases([first, second]))
    applied = reconcile(couch, "apply", str(planfile))
    assert applied.code == 0, applied.stderr
    assert applied.stdout == (f"+ database/{first}: created\n+ security/{first}: created\n"
                              "Apply complete: 2 added, 0 changed, 0 destroyed.\n")

    again = reconcile(couch, "apply", str(planfile))  # the database it creates exists now
    assert again.code == 1
    assert again.stderr.startswith(f"the server changed since the plan was made (database/{first} (created meanwhile)")
    assert "nothing was applied: run plan again" in again.stderr


def test_a_plan_for_another_server_is_refused(couch, unique, tmp_path):
    write(tmp_path / "m", "dbs.yaml", databases([unique("a")]))
    planfile = tmp_path / "plan.json"
    assert reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(planfile)).code == 0
    elsewhere = reconcile(couch, "apply", str(planfile), "--server", "http://127.0.0.1:9")
    assert elsewhere.code == 1 and elsewhere.sent == []
    assert elsewhere.stderr == (f"{planfile}: the plan was made for {couch.url}, not http://127.0.0.1:9; "
                                "make a plan for this server\n")


def test_threshold_refuses_a_mass_update_unless_forced(couch, unique, tmp_path):
    names = [unique(f"t{i}") for i in range(12)]
    write(tmp_path, "dbs.yaml", databases(names))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    write(tmp_path, "dbs.yaml", databases(names, roles="[other]"))

    refused = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert refused.code == 1
    assert refused.stderr == ("refusing to update 12 of 12 existing security objects (100% > 30%); check the "
                              "manifests, then rerun with --force or a higher --max-update-share\n")
    # As octoDNS does, the refused plan is shown whole, so the reviewer sees what the manifests would do.
    assert f"~ security/{names[0]}" in refused.stdout and "Plan: 0 to add, 12 to change, 0 to destroy." in refused.stdout
    assert "Apply complete" not in refused.stdout
    for fmt in ("text", "json", "markdown"):
        shown = reconcile(couch, "plan", str(tmp_path), "--format", fmt)
        assert shown.code == 1 and shown.stderr == refused.stderr
        if fmt == "json":
            assert len(json.loads(shown.stdout)["changes"]) == 12
        else:
            assert shown.stdout.count("security/") == 12, shown.stdout
    assert reconcile(couch, "plan", str(tmp_path), "--max-update-share", "1").code == 0
    forced = reconcile(couch, "apply", str(tmp_path), "--auto-approve", "--force")
    assert forced.code == 0 and "Apply complete: 0 added, 12 changed, 0 destroyed." in forced.stdout


def test_no_secret_reaches_any_output_or_plan_file(secret_admin, unique, tmp_path):
    couch = secret_admin
    name = unique("u")
    write(tmp_path / "m", "all.yaml", databases([unique("d")]) + f"""---
    apiVersion: reconciler/v1
    kind: User
    metadata: {{name: {name}}}
    spec:
      password: env:SECRET_PASSWORD
      roles: [app-user]
    """)
    env = {"SECRET_PASSWORD": USER_PASSWORD}
    planfile = tmp_path / "plan.json"
    runs = [reconcile(couch, "plan", str(tmp_path / "m"), "--format", fmt, "--out", str(planfile), env=env)
            for fmt in ("text", "json", "markdown")]
    runs.append(reconcile(couch, "apply", str(planfile), env=env))
    env_changed = {"SECRET_PASSWORD": USER_PASSWORD + "-rotated"}
    runs.append(reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(planfile), env=env_changed))
    assert f"  ~ user/{name}" in runs[-1].stdout and "password: (sensitive, will change)" in runs[-1].stdout
    runs.append(reconcile(couch, "apply", str(tmp_path / "m"), "--auto-approve", env=env_changed))
    assert all(run.code == 0 for run in runs), [run.stderr for run in runs]
    secrets = [USER_PASSWORD, USER_PASSWORD + "-rotated", couch.password]
    assert_no_secret(secrets, planfile.read_text(), *[run.stdout + run.stderr for run in runs])


def test_apply_without_a_terminal_needs_auto_approve_and_sends_nothing(couch, unique, tmp_path):
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    refused = reconcile(couch, "apply", str(tmp_path))
    assert refused.code == 1 and refused.sent == []
    assert refused.stderr == ("apply: stdin is not a terminal, so nobody can confirm; rerun with --auto-approve, "
                              "or apply a plan saved with `reconcile plan --out`\n")


def test_invalid_manifests_send_no_request(couch, tmp_path):
    manifest = write(tmp_path, "dbs.yaml", """
    apiVersion: reconciler/v1
    kind: Database
    metadata: {name: Bad-Name}
    spec: {}
    """)
    for command in ("plan", "apply"):
        option = "--auto-approve" if command == "apply" else f"--out={tmp_path / 'plan.json'}"
        run = reconcile(couch, command, str(tmp_path), option)
        assert run.code == 1 and run.sent == [] and run.stdout == ""
        assert run.stderr.startswith(f"{manifest}:3: Database/Bad-Name: ")
    assert not (tmp_path / "plan.json").exists()


def test_unreachable_server_is_one_line(couch, unique, tmp_path):
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    run = reconcile(couch, "plan", str(tmp_path), "--server", "http://127.0.0.1:9")
    assert (run.code, run.stderr) == (1, "cannot reach CouchDB at http://127.0.0.1:9; check COUCHDB_URL or --server "
                                         "and that the server is running\n")


def test_bad_credentials_are_one_line(couch, unique, tmp_path):
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    run = reconcile(couch, "plan", str(tmp_path), env={"COUCHDB_PASSWORD": "wrong"})
    assert run.code == 1 and len(run.stderr.splitlines()) == 1
    assert "HTTP 401" in run.stderr and run.stderr.endswith("check COUCHDB_USER and COUCHDB_PASSWORD\n")
    assert "wrong" not in run.stderr


def test_a_failing_server_stops_apply_with_one_line_and_a_rerun_converges(couch, unique, tmp_path):
    if couch.real:
        pytest.skip("injects 503 answers with couchsim's fault injector")
    first, second = unique("a"), unique("b")
    write(tmp_path, "dbs.yaml", databases([first, second]))
    fault = couch.sim.faults.inject(path=f"^/{second}/_security", method="PUT", status=503)
    failed = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert failed.code == 1
    assert failed.stderr.startswith(f"database/{second}: writing its _security and ownership marker: HTTP 503")
    told = re.search(r"the server failed; rerun when it is healthy; database/(\S+) was created without it: the next "
                     r"apply writes it \(a creation record, _users/(_local/couch-reconciler-creating:\S+), says this "
                     r"tool created it\)\n$", failed.stderr)
    assert told and told.group(1) == second, failed.stderr
    record = couch.session().get(f"{couch.url}/_users/{told.group(2)}").json()
    assert record["databases"] == [second], record  # the first database got its marker: no longer named
    assert len(failed.stderr.splitlines()) == 1
    fault.remove()

    plan = reconcile(couch, "plan", str(tmp_path))
    assert f"  ~ database/{second}  (" in plan.stdout
    assert "# restores its ownership marker in _security, which an interrupted apply left out" in plan.stdout
    assert told.group(2) in plan.stdout
    rerun = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert rerun.code == 0, rerun.stderr
    assert couch.session().get(f"{couch.url}/_users/{told.group(2)}").status_code == 404
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0
    http = couch.session()
    assert http.get(f"{couch.url}/{second}/_security").json()["couch_reconciler"] == {"created_by": "couch-reconciler"}


def test_json_and_markdown_formats(couch, unique, tmp_path):
    name = unique("a")
    write(tmp_path, "dbs.yaml", databases([name]))
    document = json.loads(reconcile(couch, "plan", str(tmp_path), "--format", "json").stdout)
    assert document["format"] == "couch-reconciler/plan" and document["summary"]["add"] == 2
    markdown = reconcile(couch, "plan", str(tmp_path), "--format", "markdown").stdout
    assert "**Plan: 2 to add, 0 to change, 0 to destroy.**" in markdown and f"| `+` | `database/{name}` |" in markdown


def test_credentials_without_admin_rights_are_one_line(couch, unique, tmp_path):
    """A `_users` user who is no server admin: CouchDB answers 401/403 to the bulk database reads."""
    name = unique("nonadmin")
    http = couch.session()
    doc = {"name": name, "type": "user", "roles": [], "password": "not-an-admin-pw"}
    assert http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json=doc).status_code == 201
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    run = reconcile(couch, "plan", str(tmp_path), env={"COUCHDB_USER": name, "COUCHDB_PASSWORD": "not-an-admin-pw"})
    assert run.code == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.endswith("use a server admin\n")
    assert "not-an-admin-pw" not in run.stderr


@pytest.mark.parametrize("answer, code", [("no", 1), ("yes", 0)])
def test_on_a_terminal_apply_asks_and_only_yes_applies(couch, unique, tmp_path, monkeypatch, answer, code):
    import couch_reconciler.cli

    monkeypatch.setattr(couch_reconciler.cli_output, "terminal", lambda stream: stream is couch_reconciler.cli.sys.stdin)
    name = unique("ask")
    write(tmp_path, "dbs.yaml", databases([name]))
    run = reconcile(couch, "apply", str(tmp_path), input=f"{answer}\n")
    assert run.code == code
    assert "Apply these changes? Only 'yes' will be accepted" in run.stdout
    if answer == "no":
        assert run.stderr == "apply cancelled; nothing was changed\n"
        assert [sent for sent in run.sent if sent[0] == "PUT"] == []
    else:
        assert run.stdout.endswith("Apply complete: 2 added, 0 changed, 0 destroyed.\n")


def test_on_a_terminal_a_large_apply_shows_a_progress_bar_not_lines(couch, unique, tmp_path, monkeypatch):
    import couch_reconciler.cli

    monkeypatch.setattr(couch_reconciler.cli_output, "terminal", lambda stream: stream is couch_reconciler.cli.sys.stdout)
    names = [unique(f"p{i}") for i in range(26)]  # 52 changes: a database and its security object each
    write(tmp_path, "dbs.yaml", databases(names))
    run = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert run.code == 0, run.stderr
    assert f"+ database/{names[0]}: created" not in run.stdout
    assert run.stdout.endswith("Apply complete: 52 added, 0 changed, 0 destroyed.\n")


def test_a_server_that_does_not_answer_in_time_is_one_line(couch, unique, tmp_path):
    if couch.real:
        pytest.skip("delays answers with couchsim's fault injector")
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    couch.sim.faults.inject(path="^/_dbs_info", latency=3.0)
    run = reconcile(couch, "plan", str(tmp_path), "--timeout", "0.5")
    assert run.code == 1
    assert run.stderr == (f"reading _dbs_info: no answer within 0.5s from {couch.url}; the server is overloaded, "
                          "or is not CouchDB: rerun when it answers\n")


def test_credentials_in_the_server_url_are_used_but_never_shown_or_saved(secret_admin, unique, tmp_path):
    couch = secret_admin
    user, password = couch.admin
    scheme, _, rest = couch.url.partition("://")
    write(tmp_path / "m", "dbs.yaml", databases([unique("a")]))
    planfile = tmp_path / "plan.json"
    run = reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(planfile),
                    env={"COUCHDB_URL": f"{scheme}://{user}:{password}@{rest}", "COUCHDB_USER": "",
                         "COUCHDB_PASSWORD": ""})
    assert run.code == 0, run.stderr
    assert json.loads(planfile.read_text())["server"] == couch.url
    assert_no_secret([password], run.stdout, run.stderr, planfile.read_text())


def test_a_server_that_is_not_couchdb_is_one_line(tmp_path):
    """A proxy's HTML page where CouchDB's JSON was expected."""
    import http.server
    import threading
    from types import SimpleNamespace

    class Page(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>Sign in to continue</html>")

        def log_message(self, *args):
            pass

        def version_string(self):
            return "login-proxy"

    proxy = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        write(tmp_path, "dbs.yaml", databases(["orders"]))
        page = SimpleNamespace(url=f"http://127.0.0.1:{proxy.server_port}", admin=("admin", "pw"))
        run = reconcile(page, "plan", str(tmp_path))
        assert (run.code, run.stderr) == (1, "reading _dbs_info: the answer (HTTP 200, text/html, Server: "
                                             "login-proxy) is not CouchDB's JSON; check that --server (COUCHDB_URL) "
                                             "points at CouchDB itself, not a web page or a proxy\n")
    finally:
        proxy.shutdown()
