"""couchsim's replicator, laid out as CouchDB's couch_replicator: `documents` (the `_replicator` database's
rules), `rep` (a parsed replication and its id), `client` (HTTP to an endpoint), `worker` (one job at
work), `scheduler` (which jobs run), and `doc_processor` (documents to jobs, `/_scheduler/*`
views). couch_reconciler/couchsim/replicator.py binds it to a couchsim Cluster."""
