"""The replicator of a couchsim Cluster (couch_reconciler/couchsim/replication/ bound to it): it reads the cluster's replicator
databases directly, as CouchDB's replicator opens its own `_replicator` shards, and writes as the
`_replicator` role."""
from __future__ import annotations

import time

from .cluster import Cluster
from .database import Database
from .errors import not_found
from .replication.doc_processor import DocProcessor
from .replication.documents import is_replicator_db
from .replication.scheduler import Job
from .replication.worker import Stats
from .revisions import DocEntry
from .security import UserCtx


class ClusterHost:
    """ReplicatorHost over couchsim's Cluster."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.uuid = cluster.uuid
        self.node = cluster.local_node

    def config_get(self, section: str, key: str) -> str | None:
        return self.cluster.config.get(section, key)

    def replicator_db_names(self) -> list[str]:
        return sorted(name for name in self.cluster.dbs if is_replicator_db(name))

    def rep_docs(self, db_name: str) -> list[dict]:
        db = self.cluster.dbs.get(db_name)
        if db is None or not db.docs:
            return []
        return [db.doc_json(entry, entry.winner) for entry in db.iter_entries()
                if not entry.deleted and not entry.id.startswith("_design/")]

    def doc_count(self, db_name: str) -> int:
        db = self.cluster.dbs.get(db_name)
        return 0 if db is None else db.doc_count

    def rep_doc(self, db_name: str, doc_id: str) -> dict | None:
        db = self.cluster.dbs.get(db_name)
        entry = db.entry(doc_id) if db is not None else None
        return None if entry is None or entry.deleted else db.doc_json(entry, entry.winner)

    async def save_rep_doc(self, db_name: str, body: dict) -> bool:
        db = self.cluster.dbs.get(db_name)
        if db is None:
            return True
        [result] = await db.update_docs([body], UserCtx(None, ["_admin", "_replicator"]))
        return not isinstance(result, Exception)


class ClusterReplicator(DocProcessor):
    """The replicator of a couchsim Cluster: follows its replicator databases' writes and answers the
    `/_scheduler/*` calls the server makes on `cluster.replicator`."""

    def __init__(self, cluster: Cluster, backoff_base_s: float = 30.0):
        super().__init__(ClusterHost(cluster), backoff_base_s)
        self.cluster = cluster
        cluster.doc_listeners.append(self._on_doc)

    def _on_doc(self, db: Database, entry: DocEntry) -> None:
        if is_replicator_db(db.name):
            self.doc_changed(db.name, entry.id, None if entry.deleted else db.doc_json(entry, entry.winner))

    def scheduler_doc(self, db_name: str, doc_id: str) -> dict:
        found = super().scheduler_doc(db_name, doc_id)
        if found is None:
            raise not_found()
        return found

    def scheduler_job(self, job_id: str) -> dict:
        found = super().scheduler_job(job_id)
        if found is None:
            raise not_found()
        return found

    def _shard_name(self, job: Job) -> str:
        """The shard holding the job's document: `_active_tasks` shows `Rep#rep.db_name` as the replicator's
        changes listener (couch_multidb_changes) set it, a shard name."""
        db = self.cluster.dbs.get(job.rep.db_name)
        return job.rep.db_name if db is None else db.shard_name(job.rep.doc_id)

    def active_tasks(self) -> list:
        """couch_replicator_scheduler_job's `_active_tasks` entry for each running job."""
        tasks = []
        for job in self.scheduler.running():
            stats = job.stats or Stats()
            tasks.append({
                "type": "replication", "node": self.host.node, "pid": self.scheduler.job_ejson(job, "")["pid"],
                "replication_id": job.id, "doc_id": job.rep.doc_id, "database": self._shard_name(job),
                "user": job.rep.user, "continuous": job.rep.continuous,
                "source": job.rep.source.url, "target": job.rep.target.url,
                "started_on": int(job.last_started()), "updated_on": int(time.time()),
                "revisions_checked": stats.revisions_checked,
                "missing_revisions_found": stats.missing_revisions_found, "docs_read": stats.docs_read,
                "docs_written": stats.docs_written, "doc_write_failures": stats.doc_write_failures,
                "changes_pending": stats.changes_pending, "checkpointed_source_seq": stats.checkpointed_source_seq,
                "source_seq": stats.source_seq, "through_seq": stats.through_seq,
                "checkpoint_interval": job.rep.checkpoint_interval_ms,
            })
        return tasks
