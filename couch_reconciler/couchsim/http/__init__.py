"""couchsim's HTTP front, split along CouchDB's own sections (chttpd_misc, chttpd_node, chttpd_db,
couch_httpd_auth, couch_replicator_httpd, mango_httpd); `app.py` routes to them."""

from .app import make_app

__all__ = ["make_app"]
