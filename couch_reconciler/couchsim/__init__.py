"""couchsim: an in-memory server that answers like Apache CouchDB 3.x, for tests and demos.

Product code (couch_reconciler/) never imports this package; it talks HTTP to whatever server it is given.
"""

COUCHDB_VERSION = "3.4.3"
