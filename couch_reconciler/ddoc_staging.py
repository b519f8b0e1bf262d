"""A view change deployed without downtime (`staged: true`): the new index is built under `_design/NAME-next`
first, then NAME is written with the same views (so it uses the built index) and `-next` is deleted.
"""

from __future__ import annotations

import time

from .client import CouchSession, db_path
from .databases import seq_number
from .ddoc_stored import stored_content, upload_body
from .errors import ReconcileError
from .model import Desired

STAGED_SUFFIX = "-next"
STAGED_WAIT = 3600.0  # seconds an index build may take before apply stops waiting (a rerun resumes)
STAGED_POLL = 1.0


def stage(session: CouchSession, database: str, name: str, desired: Desired, subject: str,
          timeout: float = STAGED_WAIT) -> None:
    """Build the new index under `_design/NAME-next` before NAME changes, as CouchDB's docs recommend
    (src/docs/src/best-practices/views.rst, "Deploying a view change in a live environment"): index files
    are named by the views' signature, so NAME written with the same views then uses the built index."""
    staged = name + STAGED_SUFFIX
    path = db_path(database, "_design", staged)
    current = session.request("GET", path, ok=(404,), what=subject)
    body = upload_body(desired, None, subject)
    if current.status_code == 404 or stored_content(current.json()) != stored_content(desired.body):
        if current.status_code != 404:
            body["_rev"] = current.json()["_rev"]  # left by an interrupted apply: overwritten
        session.put(path, body, what=f"{subject}: staging as _design/{staged}")
    view = next(view for view in desired.body["views"] if view != "lib")
    target = seq_number(session.get(db_path(database), what=subject)["update_seq"])
    deadline = time.monotonic() + timeout
    while True:
        # update=lazy starts the build and answers at once, so no request waits for a long build.
        session.request("GET", db_path(database, "_design", staged, "_view", view),
                        params={"limit": "0", "update": "lazy"}, what=f"{subject}: building _design/{staged}")
        index = session.get(db_path(database, "_design", staged, "_info"), what=subject)["view_index"]
        # fabric_group_info sums the shards' index seqs, the number that starts the database's update_seq.
        if not index.get("updater_running") and seq_number(index.get("update_seq")) >= target:
            return
        if time.monotonic() > deadline:
            raise ReconcileError(f"{subject}: the index of _design/{staged} is still building after {timeout:g}s; "
                                 "run apply again to keep waiting (the old version stays live meanwhile)")
        time.sleep(STAGED_POLL)


def delete_if_present(session: CouchSession, database: str, name: str, subject: str) -> None:
    path = db_path(database, "_design", name)
    current = session.request("GET", path, ok=(404,), what=subject)
    if current.status_code != 404:
        session.request("DELETE", path, params={"rev": current.json()["_rev"]}, ok=(404, 409), what=subject)

