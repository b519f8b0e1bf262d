"""couchsim's fault injector (couch_reconciler/couchsim/faults.py): latency, 5xx, dropped connections, 409 on a path,
per path pattern, method, rate and count; driven from the test process through `couch.sim.faults`, never over HTTP.

A real CouchDB has no such control, so every case here skips against COUCHDB_URL with that reason.
"""

import time

import pytest
import requests

from behaviour_fixtures import answer, db_url


@pytest.fixture
def faults(server):
    if server.sim is None:
        pytest.skip("couchsim-only: the fault injector is couchsim's in-process test control; a real CouchDB has none")
    injector = server.sim.faults
    yield injector
    injector.clear()


def test_status_fault_answers_that_status_on_matching_paths_only(server, db, faults):
    """A `status` rule answers with that code for requests whose path matches; other paths are untouched."""
    faults.inject(path=f"/{db}/flaky", status=503)
    assert server.admin.get(db_url(db, "flaky")).status_code == 503
    assert server.admin.get(db_url(db, "other")).status_code == 404


def test_409_fault_answers_couchdbs_conflict_body(server, db, faults):
    """A 409 rule answers with CouchDB's conflict body, so clients exercise their real conflict path."""
    faults.inject(path=f"/{db}/doc", method="PUT", status=409)
    response = server.admin.put(db_url(db, "doc"), json={})
    assert answer(response) == (409, {"error": "conflict", "reason": "Document update conflict."})
    assert server.admin.get(db_url(db, "doc")).status_code == 404


def test_method_filter(server, db, faults):
    """A rule with `method` leaves other methods alone."""
    faults.inject(path=f"/{db}$", method="DELETE", status=500)
    assert server.admin.get(db_url(db)).status_code == 200
    assert server.admin.delete(db_url(db)).status_code == 500


def test_count_caps_how_many_requests_fail(server, db, faults):
    """`count` limits the rule to the first N matching requests; `fired` counts them."""
    fault = faults.inject(path=f"/{db}$", status=502, count=2)
    statuses = [server.admin.get(db_url(db)).status_code for _ in range(4)]
    assert statuses == [502, 502, 200, 200]
    assert fault.fired == 2


def test_rate_affects_a_fraction(server, db, faults):
    """`rate` is the probability a matching request is affected: 0.5 over 200 requests fails some, not all."""
    faults.inject(path=f"/{db}$", status=503, rate=0.5)
    failed = sum(server.admin.get(db_url(db)).status_code == 503 for _ in range(200))
    assert 40 < failed < 160


def test_latency_delays_the_answer(server, db, faults):
    """`latency` delays matching requests by that many seconds, then answers normally."""
    faults.inject(path=f"/{db}$", latency=0.3)
    started = time.monotonic()
    assert server.admin.get(db_url(db)).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_drop_closes_the_connection_without_an_answer(server, db, faults):
    """`drop` aborts the connection: the client sees a connection error, not an HTTP status."""
    faults.inject(path=f"/{db}$", drop=True, count=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + db_url(db), auth=(server.admin_name, server.admin_password), timeout=5)
    assert server.admin.get(db_url(db)).status_code == 200


def test_removed_rule_stops_firing(server, db, faults):
    """Fault.remove() takes a rule out; clear() removes all."""
    fault = faults.inject(path=f"/{db}$", status=500)
    assert server.admin.get(db_url(db)).status_code == 500
    fault.remove()
    assert server.admin.get(db_url(db)).status_code == 200


def test_no_http_endpoint_controls_faults(server):
    """Issue 3: faults are controlled from the test process, "never through an HTTP endpoint that product code could reach"."""
    if server.sim is None:
        pytest.skip("couchsim-only: a real CouchDB has no fault injector to hide")
    for path in ("/_faults", "/_couchsim/faults", "/_sim/faults"):
        assert server.admin.post(path, json={"path": ".*", "status": 500}).status_code in (400, 404, 405)
    assert server.admin.get("/_up").status_code == 200
