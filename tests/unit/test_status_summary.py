"""`reconcile status` as text at the scale of the design: the summary of 10,000 users fits a screen."""

from __future__ import annotations

from couch_reconciler.status import FanIn, Health, ReplicationStatus, render_text

USERS = 10_000
SCREEN = 40  # lines


def observed(pending: int, without: int) -> Health:
    """What status reads from a server where a continuous fan-in of USERS users runs 500 jobs and keeps
    `pending` waiting longer than the threshold, and `without` users have no replication yet."""
    names = [f"user-{index:05d}" for index in range(USERS)]
    statuses = [ReplicationStatus(f"per-user.userdb-{name.encode().hex()}.to.analytics",
                                  "pending" if index < pending else "running", index >= pending,
                                  error="pending for 900s (more than 300s)" if index < pending else None,
                                  fan_in="per-user -> analytics")
                for index, name in enumerate(names[without:])]
    statuses.append(ReplicationStatus("main-entities-to-analytics", "crashing", False, "replication_auth_error",
                                      source="manifests/replications.yaml:5"))
    fan_in = FanIn("per-user -> analytics", "continuous", "manifests/user-databases.yaml:20", USERS,
                   without=names[:without], states={"pending": pending, "running": USERS - without - pending},
                   undelivered=pending, since="2026-12-03T07:00:00+00:00", stale_seconds=3600.0,
                   how="its continuous replication is not running")
    return Health([fan_in], statuses, None, 300.0)


def test_the_summary_of_ten_thousand_users_fits_a_screen_and_says_what_needs_attention():
    text = render_text(observed(pending=9_480, without=20))
    lines = text.splitlines()
    assert len(lines) < SCREEN, text
    assert "  users         10,000: 9,980 with a replication, 20 without" in lines
    assert any(line.startswith("  - per-user -> analytics: 20 users (`user-00000`") and "and 15 more" in line
               for line in lines)
    assert any("stale" in line and "(1h 0m ago)" in line for line in lines)
    assert "  - per-user -> analytics: 9,480 replication(s) pending" in lines
    assert any(line.startswith("main-entities-to-analytics") and "crashing" in line for line in lines)
    assert lines[-1].startswith("9,981 replications: 1 crashing, 9,480 pending, 500 running. Needs attention:")


def test_all_lists_every_replication():
    lines = render_text(observed(pending=9_480, without=20), every=True).splitlines()
    assert sum(1 for line in lines if line.startswith("per-user.userdb-")) == USERS - 20
