"""couch-reconciler: CouchDB 3.x as code.

The pipeline runs one way: load -> validate -> expand -> observe -> diff -> plan
-> render / apply. Each stage is a module of this package; resource kinds are
plugins under ``couch_reconciler.kinds``. See docs/architecture.md.
"""

__version__ = "0.1.0"
