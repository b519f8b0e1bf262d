"""The demo's run-time clients, speaking HTTP with their own credentials (scripts/demo.sh).

`sign-up`: the app's back end creates two users (no role, `signed_up_at` for the panel's sign-ups per day),
and waits for couch_peruser to create their databases. `converged`: waits until `reconcile watch` gave each of them what the manifests' template
wants (the role that opens main-entities, security, a first one-shot replication to analytics) and shows it.
`wait-for-log FILE TEXT`: waits until a line of FILE (watch's log) holds TEXT. `flow`: one of them writes
to her database and to main-entities, and the admin dashboard in analytics counts both documents once the
replications carried them (watch's one-shot run for hers). `history`: the four users' devices sync three
weeks of documents they wrote offline (dated, typed, each with its owner and an id in her namespace), so the
analytics panel has something to show. `panel`: prints the panel's address and how to sign in.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import requests

URL = os.environ["COUCHDB_URL"].rstrip("/")
ADMIN = (os.environ["COUCHDB_USER"], os.environ["COUCHDB_PASSWORD"])
USERS = ("zoë", "Mark.O+demo@example.com")
WAIT = 30.0


def user_database(name: str) -> str:
    return "userdb-" + "".join(format(byte, "x") for byte in name.encode("utf-8"))


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {WAIT:g}s waiting for {what}")
        time.sleep(0.2)


def sign_up(admin: requests.Session) -> None:
    for name in USERS:
        doc = {"name": name, "type": "user", "roles": [], "password": f"{name}-password",
               "signed_up_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        answer = admin.put(f"{URL}/_users/{quote('org.couchdb.user:' + name, safe=':')}", json=doc)
        print(f"PUT _users/org.couchdb.user:{name} -> {answer.status_code}")
        database = user_database(name)
        until(lambda: admin.get(f"{URL}/{database}").status_code == 200, f"couch_peruser to create {database}")
        print(f"  couch_peruser created {database}")


def converged(admin: requests.Session) -> None:
    for name in USERS:
        database = user_database(name)
        user_doc = f"{URL}/_users/{quote('org.couchdb.user:' + name, safe=':')}"
        replication = f".{database}.to.analytics"  # the template's id: <template>.<database>.to.<target>

        def state() -> tuple[list, list, list]:
            roles = admin.get(user_doc).json().get("roles", [])
            members = admin.get(f"{URL}/{database}/_security").json().get("members", {}).get("names", [])
            ids = [row["id"] for row in admin.get(f"{URL}/_replicator/_all_docs").json()["rows"]
                   if row["id"].endswith(replication)]
            return roles, members, ids

        until(lambda: all(state()), f"reconcile watch to converge {name}")
        roles, members, ids = state()
        print(f"  {name}: roles {roles}; {database} members {members}; _replicator/{ids[0]}")


def wait_for_log(path: str, text: str) -> None:
    def logged() -> bool:
        try:
            with open(path, encoding="utf-8") as log:
                return any(text in line for line in log)
        except FileNotFoundError:  # the demo removed the last run's log; watch has not created its own yet
            return False

    until(logged, f"`{text}` in {path}")


def document(name: str, **fields: str) -> dict:
    """A document as the app writes it: an id in her namespace (`NAME:`) and her name as its owner, which the
    provenance validation asks of every user's write (docs/reference-architecture.md, "Provenance")."""
    return {"_id": f"{name}:{uuid.uuid4().hex}", "owner": name, **fields}


def as_user(name: str, password: str) -> requests.Session:
    user = requests.Session()
    user.auth = (name.encode("utf-8"), password.encode("utf-8"))  # CouchDB compares UTF-8 bytes
    return user


def flow(admin: requests.Session) -> None:
    name = USERS[0]
    user = as_user(name, f"{name}-password")
    day = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ids = []
    for database, kind in ((user_database(name), "journal-entry"), ("main-entities", "shared-task")):
        answer = user.post(f"{URL}/{database}", json=document(name, type=kind, created_at=day))
        print(f"{name}: POST /{database} -> {answer.status_code}")
        ids.append(answer.json()["id"])
    print(f"{name}: GET /analytics -> {user.get(f'{URL}/analytics').status_code} (admin-only)")
    for doc_id in ids:
        until(lambda: admin.get(f"{URL}/analytics/{doc_id}").status_code == 200, f"{doc_id} in analytics")
    for view, what in (("by_type", "type"), ("by_user", "user")):
        rows = admin.get(f"{URL}/analytics/_design/dashboard/_view/{view}", params={"group": "true"}).json()["rows"]
        print(f"analytics dashboard, documents per {what}: "
              + json.dumps({row["key"]: row["value"] for row in rows}, ensure_ascii=False))


HISTORY_DAYS = 21
KINDS = {"journal-entry": "private", "photo": "private", "shared-task": "shared", "comment": "shared"}


def history(admin: requests.Session) -> None:
    accounts = {"alice": os.environ["ALICE_PASSWORD"], "bob": os.environ["BOB_PASSWORD"],
                **{name: f"{name}-password" for name in USERS}}
    chance = random.Random(13)  # the same three weeks at every run
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    written = []
    for name, password in accounts.items():
        user, busy = as_user(name, password), chance.uniform(0.6, 2.2)
        docs = {"private": [], "shared": []}
        for back in range(HISTORY_DAYS, -1, -1):
            for _ in range(int(chance.expovariate(1 / busy))):
                kind = chance.choice(list(KINDS))
                at = today - timedelta(days=back, minutes=chance.randrange(60 * 24))
                docs[KINDS[kind]].append(document(name, type=kind, created_at=at.strftime("%Y-%m-%dT%H:%M:%SZ")))
        for where, database in (("private", user_database(name)), ("shared", "main-entities")):
            answer = user.post(f"{URL}/{database}/_bulk_docs", json={"docs": docs[where]})
            answer.raise_for_status()
            refused = [row for row in answer.json() if "error" in row]
            if refused:
                sys.exit(f"{name}: {database} refused {len(refused)} documents: {refused[0]}")
            written += [row["id"] for row in answer.json()]
        print(f"{name}: synced {len(docs['private'])} documents to {user_database(name)} "
              f"and {len(docs['shared'])} to main-entities")
    until(lambda: all_in_analytics(admin, written), f"{len(written)} documents to reach analytics")
    print(f"all {len(written)} reached analytics")


def all_in_analytics(admin: requests.Session, ids: list[str]) -> bool:
    rows = admin.post(f"{URL}/analytics/_all_docs", json={"keys": ids}).json()["rows"]
    return all("value" in row for row in rows)


def panel(_: requests.Session) -> None:
    print(f"The analytics panel: {URL}/analytics-panel/_design/panel/index.html")
    print("Sign in as `ops` (a server admin the manifests declare), password: OPS_ADMIN_PASSWORD in manifests/demo.env;")
    print("a user such as alice, password ALICE_PASSWORD, is refused: \"Not authorised\".")


if __name__ == "__main__":
    with requests.Session() as session:
        session.auth = ADMIN
        if sys.argv[1] == "wait-for-log":
            wait_for_log(*sys.argv[2:4])
        else:
            {"sign-up": sign_up, "converged": converged, "flow": flow, "history": history,
             "panel": panel}[sys.argv[1]](session)
