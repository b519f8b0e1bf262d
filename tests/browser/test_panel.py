"""The analytics panel (manifests/panel.yaml) in a real browser, on the reference architecture as
`reconcile apply manifests/` deploys it (with `reconcile watch` running, which replicates the users'
databases into analytics): an admin signs in with /_session and reads the figures the views and
the scheduler return; a user who is not an admin sees only "Not authorised"; a reload with the server
unreachable shows the last figures under a banner that says so.

The panel is compared with what CouchDB answers the test itself (the views, /_scheduler/docs), read again
until both agree: on a real server other tests may write meanwhile.

Relied on: /_session sets the AuthSession cookie (docs.couchdb.org, api/server/authn.html); an authenticated
non-member reading an admin-only database gets 403 (apache/couchdb src/couch/src/couch_db.erl
check_is_member); `_scheduler/docs` lists every replication document with its state (docs.couchdb.org,
api/server/common.html#scheduler-docs).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote, urlsplit

import pytest
import requests

from cleanup import left_as_found
from reference_world import apply_manifests, sign_up, watching_manifests
from waiting import wait_for
from couch_reconciler.kinds.user_databases import user_database

PANEL = "/analytics-panel/_design/panel/index.html"
STORED = "analytics-panel:last-figures"
TOP_TYPES, TOP_USERS = 12, 10  # the panel shows the largest ones, the rest as one "others" bar
AGREE = 20.0  # seconds for the panel and the server to show the same figures
REPLICATOR_SCAN = 90.0  # seconds: [replicator] interval (60 s) and the job's start


def day(back: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=back)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def world(module_couch):
    couch = module_couch
    with left_as_found(couch.url, couch.admin):
        world = deploy(couch)
        with watching_manifests(couch):
            for name in world["signed_up"]:  # the fan-in card counts the users whose database replicates
                doc = f"{couch.url}/_replicator/per-user.{user_database('userdb-', name)}.to.analytics"
                wait_for(lambda: world["admin"].get(doc).status_code == 200, f"watch's first run for {name}")
            yield world


def deploy(couch) -> dict:
    apply_manifests(couch)
    admin = requests.Session()
    admin.auth = couch.admin
    suffix = time.time_ns() % 10**8
    writer, other = f"writer-ü-{suffix}", f"other-{suffix}"
    def by(owner: str, number: int, **fields: str) -> dict:  # as the fan-in carries a user's documents
        return {"_id": f"{owner}:{number}", "owner": owner, **fields}

    docs = ([by(writer, i, type="journal-entry", created_at=day(0)) for i in range(3)]
            + [by(writer, i, type="photo", created_at=day(2)) for i in range(3, 5)]
            + [by(other, 0, type="shared-task", created_at=day(5))]
            + [{"type": "photo", "created_at": day(2)}]  # no owner: "(unknown)"
            + [{"type": "photo", "owner": writer, "created_at": day(2)}]  # not in her namespace: "(unknown)"
            + [by(other, 1, type="comment")])  # no date
    assert admin.post(f"{couch.url}/analytics/_bulk_docs", json={"docs": docs}).status_code == 201
    user = f"reader-{suffix}"
    sign_up(admin, couch.url, user, "reader-pw", day(0))
    sign_up(admin, couch.url, f"early-{suffix}", "early-pw", day(3))
    return {"couch": couch, "admin": admin, "url": couch.url, "user": user, "writer": writer,
            "signed_up": [user, f"early-{suffix}"]}


def open_panel(browser, base: str):
    page = browser.new_page()
    page.goto(base + PANEL)
    return page


def sign_in(page, name: str, password: str) -> None:
    page.fill("#signin-form [name=name]", name)
    page.fill("#signin-form [name=password]", password)
    page.click("#signin-form button")


def view_rows(world, database: str, ddoc: str, view: str, **query) -> list[dict]:
    answer = world["admin"].get(f"{world['url']}/{database}/_design/{ddoc}/_view/{view}", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()["rows"]


READ_BARS = """bars => bars.map(bar => [bar.dataset.key,
    (bar.querySelector("text.value") || {}).textContent || null, bar.querySelector("title").textContent])"""


def shown_bars(page, chart: str) -> dict[str, int]:
    """The bars of a chart as a person reads them, by name: the number written beside the bar, else (a long
    time series has no room for them) the one its tooltip shows; an empty day has neither and reads 0."""
    bars = page.eval_on_selector_all(f"[data-chart={chart}] .bar", READ_BARS)
    return {key: int((label or tooltip.rpartition(": ")[2]).replace(",", "")) for key, label, tooltip in bars}


def shown_text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def largest(rows: list[dict], count: int) -> dict[str, int]:
    ordered = sorted(rows, key=lambda row: (-row["value"], str(row["key"])))
    return {str(row["key"]): row["value"] for row in ordered[:count]}


def per_day(rows: list[dict]) -> dict[str, int]:
    return {"-".join(row["key"]): row["value"] for row in rows if isinstance(row["key"], list)}


def agree(page, expected, shown, what: str):
    """Waits until the panel shows what the server answers now, pressing Refresh between tries."""
    def same():
        want, got = expected(), shown()
        if want != got:
            page.click("#refresh")
            page.wait_for_selector("#dashboard:not([hidden])")
            return None
        return want
    return wait_for(same, f"the panel to show the {what} the server returns", AGREE, interval=0.5)


def into_analytics(world) -> list[dict]:
    """The replications into analytics, every page of /_scheduler/docs/_replicator."""
    docs: list[dict] = []
    while True:
        page = world["admin"].get(f"{world['url']}/_scheduler/docs/_replicator",
                                  params={"limit": "1000", "skip": str(len(docs))}).json()
        docs += page["docs"]
        if len(page["docs"]) < 1000:
            break
    # A document CouchDB could not parse yet has no endpoints in its row.
    return [doc for doc in docs if database_of(doc.get("target") or "") == "analytics"]


def database_of(endpoint: str) -> str:
    return unquote(urlsplit(endpoint).path.strip("/").split("/")[-1])


def scheduler_states(world) -> dict[str, int]:
    """Replications into analytics by state."""
    states: dict[str, int] = {}
    for doc in into_analytics(world):
        states[doc["state"]] = states.get(doc["state"], 0) + 1
    return {state: states.get(state, 0) for state in ("running", "pending", "crashing", "failed")}


def test_an_admin_signs_in_and_every_chart_shows_the_numbers_the_server_returns(world, browser):
    couch = world["couch"]
    page = open_panel(browser, world["url"])
    page.wait_for_selector("#signin:not([hidden])")
    sign_in(page, *couch.admin)
    page.wait_for_selector("#dashboard:not([hidden]) [data-chart=days] svg")
    assert shown_text(page, "#who-name") == couch.user

    types = agree(page, lambda: largest(view_rows(world, "analytics", "dashboard", "by_type", group="true"), TOP_TYPES),
                  lambda: {k: v for k, v in shown_bars(page, "types").items() if k != "(others)"}, "documents per type")
    assert types["journal-entry"] >= 3 and types["photo"] >= 3
    total = sum(row["value"] for row in view_rows(world, "analytics", "dashboard", "by_type", group="true"))
    assert shown_text(page, "[data-kpi=documents] .kpi-value") == f"{total:,}"

    authors = view_rows(world, "analytics", "dashboard", "by_user", group="true")
    shown_authors = {k: v for k, v in shown_bars(page, "users").items() if k != "(others)"}
    assert shown_authors == largest(authors, TOP_USERS)
    if len(authors) <= TOP_USERS:  # a fresh server: her five documents and the ones nobody owns are all shown
        assert shown_authors[world["writer"]] == 5 and shown_authors["(unknown)"] >= 2
    total_line = f"Total {sum(row['value'] for row in authors):,} documents from {len(authors):,} authors"
    assert shown_text(page, "[data-chart=users] .note").startswith(total_line)

    documents_per_day = per_day(view_rows(world, "analytics", "dashboard", "by_day", group_level="3"))
    bars = shown_bars(page, "days")
    assert len(page.locator("[data-chart=days] .bar").all()) >= 14  # at least two weeks, empty days drawn as 0
    for back in (0, 2, 5):
        key = day(back)[:10]
        assert bars[key] == documents_per_day[key] >= (3 if back == 0 else 1), key
    assert bars == {key: documents_per_day.get(key, 0) for key in bars}

    sign_ups = per_day(view_rows(world, "_users", "sign-ups", "by_day", group_level="3"))
    shown_sign_ups = shown_bars(page, "signups")
    for back in (0, 3):
        assert shown_sign_ups[day(back)[:10]] == sign_ups[day(back)[:10]] >= 1
    users = sum(row["value"] for row in view_rows(world, "_users", "sign-ups", "by_day", group_level="3"))
    assert shown_text(page, "[data-kpi=users] .kpi-value") == f"{users:,}"

    def fan_in_shown() -> dict[str, int]:
        return {state: int(shown_text(page, f"[data-state={state}] .count").replace(",", ""))
                for state in ("running", "pending", "crashing", "failed")}
    # A fresh cluster's replicator finds a `_replicator` made after it started at its next scan for shards
    # (couch_replicator_doc_processor.erl start_scanner/1: every half [replicator] interval, 30 s by default).
    wait_for(lambda: (server := scheduler_states(world))["running"] + server["pending"] >= 1,
             "CouchDB's replicator to schedule main-entities -> analytics", REPLICATOR_SCAN)
    # The users' fan-in documents watch wrote are scheduled at the same scan, or at the next one.
    wait_for(lambda: any(database_of(doc["source"]).startswith("userdb-") and doc["state"] != "failed"
                         for doc in into_analytics(world)),
             "CouchDB's replicator to schedule a user's database -> analytics", REPLICATOR_SCAN)
    states = agree(page, lambda: scheduler_states(world), fan_in_shown, "replication states")
    assert states["running"] + states["pending"] >= 1  # at least main-entities -> analytics
    covered = int(shown_text(page, "[data-fan=covered]"))
    assert 1 <= covered <= users


def test_signing_out_ends_the_session_and_forgets_the_figures(world, browser):
    page = open_panel(browser, world["url"])
    sign_in(page, *world["couch"].admin)
    page.wait_for_selector("#dashboard:not([hidden])")
    assert page.evaluate(f"localStorage.getItem({json.dumps(STORED)})") is not None
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate(f"localStorage.getItem({json.dumps(STORED)})") is None
    page.reload()
    page.wait_for_selector("#signin:not([hidden])")  # CouchDB's cookie is gone too


def test_a_wrong_password_is_refused_by_couchdb_and_said_so(world, browser):
    page = open_panel(browser, world["url"])
    # a user's name, never the server admin's: five failed logins lock an account out ([chttpd_auth_lockout])
    sign_in(page, world["user"], "not-the-password")
    page.wait_for_selector("#signin-error:has-text('Name or password is incorrect.')")
    assert page.locator("#dashboard").is_hidden()


def test_a_user_who_is_not_an_admin_sees_only_not_authorised(world, browser):
    page = open_panel(browser, world["url"])
    sign_in(page, world["user"], "reader-pw")
    page.wait_for_selector("#refused:not([hidden])")
    assert shown_text(page, "#refused h1") == "Not authorised"
    assert shown_text(page, "#refused-name") == world["user"]
    assert page.locator("#dashboard").is_hidden()
    assert page.locator("svg.chart").count() == 0  # nothing was drawn, not even hidden
    assert page.evaluate(f"localStorage.getItem({json.dumps(STORED)})") is None
    # CouchDB, not the page, refused her: the same cookie is answered 403 on analytics.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    answer = requests.get(f"{world['url']}/analytics/_design/dashboard/_view/by_type", cookies=cookies)
    assert answer.status_code == 403


def test_a_reload_with_the_server_unreachable_says_so_and_shows_the_last_figures(world, browser, relay):
    page = open_panel(browser, f"http://127.0.0.1:{relay.port}")
    sign_in(page, *world["couch"].admin)
    page.wait_for_selector("#dashboard:not([hidden]) [data-chart=types] svg")
    documents = shown_text(page, "[data-kpi=documents] .kpi-value")
    types = shown_bars(page, "types")
    # The service worker keeps the page's own files once it controls the page.
    wait_for(lambda: page.evaluate("navigator.serviceWorker.controller !== null"), "the service worker")

    relay.cut()
    page.reload()
    banner = page.wait_for_selector("#banner.offline:not([hidden])")
    assert "cannot be reached" in banner.inner_text()
    assert shown_text(page, "[data-kpi=documents] .kpi-value") == documents
    assert shown_bars(page, "types") == types


def test_a_page_a_user_uploads_runs_no_script_even_for_a_signed_in_admin(world, browser):
    """The attachments' Content-Security-Policy (manifests/node-config.yaml) lets the panel's two scripts run by
    their hashes, and nothing else: a page a user stores in her own database, opened by an admin with a session,
    runs neither its inline script nor its own script file (chttpd_db.erl sends the policy with every attachment)."""
    user = requests.Session()
    user.auth = (world["user"], "reader-pw")
    database = f"userdb-{world['user'].encode().hex()}"
    page_html = b'<title>inert</title><script>document.title = "ran"</script><script src="x.js"></script>'
    attachments = {"page.html": {"content_type": "text/html", "data": base64.b64encode(page_html).decode()},
                   "x.js": {"content_type": "application/javascript",
                            "data": base64.b64encode(b'document.title = "ran too"').decode()}}
    # In her namespace, as the provenance validation watch deploys into her database asks.
    trap = f"{world['url']}/{database}/{world['user']}:trap"
    stored = user.put(trap, json={"owner": world["user"], "_attachments": attachments})
    assert stored.status_code == 201, stored.text

    page = open_panel(browser, world["url"])
    sign_in(page, *world["couch"].admin)
    page.wait_for_selector("#dashboard:not([hidden])")  # the panel's own scripts run
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    page.goto(f"{trap}/page.html")
    page.wait_for_load_state("load")
    assert page.title() == "inert"
    assert any("Content Security Policy" in line for line in blocked), blocked
