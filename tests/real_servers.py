"""The real CouchDB servers the environment names, if any: COUCHDB_URL (one server, or one node of a cluster)
and COUCHDB_CLUSTER_URLS (comma-separated, one URL per node of one real cluster), both with COUCHDB_USER and
COUCHDB_PASSWORD. Without them every test runs on couchsim."""

from __future__ import annotations

import os


def real_admin() -> tuple[str, str]:
    return os.environ.get("COUCHDB_USER", "admin"), os.environ.get("COUCHDB_PASSWORD", "")


def real_server() -> tuple[str, tuple[str, str]] | None:
    url = os.environ.get("COUCHDB_URL")
    if not url:
        return None
    return url.rstrip("/"), real_admin()


def real_cluster() -> tuple[list[str], tuple[str, str]] | None:
    """Where the tests of what is per node (config, server admins) run instead of a 3-node couchsim."""
    urls = [url.strip().rstrip("/") for url in os.environ.get("COUCHDB_CLUSTER_URLS", "").split(",") if url.strip()]
    if not urls:
        return None
    return urls, real_admin()
