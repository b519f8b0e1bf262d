"""`reconcile watch`: keep the server converged between deployments (docs/watch.md).

- A **full reconcile** at start and every `interval` (loop.py): the manifests read again
  (`pipeline.desired_state`, as `plan` reads them), then `make_plan` + `apply.execute`, the engine
  `reconcile apply --auto-approve` runs, inside `reads.remembering` so that `_security` is read again only
  for databases whose `update_seq` moved. Manifests found invalid change nothing: that full reconcile is
  skipped and targeted reconciles wait for one that finds them valid (a deployment's `git pull` must not
  be fought with the previous desired state).
- In between, two feeds (feeds.py, events.py): `_users/_changes` (sign-ups) and `/_db_updates` (databases
  created, deleted, written). A burst of events becomes one **targeted reconcile**: the same engine on a
  desired state narrowed to the users and databases concerned (narrowing.py), with the `_users` documents
  the feed brought handed to the template resolution (no `_users` scan).
- `fanIn: triggered` (fan_in.py): a one-shot `_replicator` document per user database that changed, at
  most `max_triggered` running at once, written through the replication kind's plan and apply.
- Feed positions are checkpointed in `_users/_local/couch-reconciler-watch` (checkpoint.py); SIGTERM/SIGINT
  finish the current action, write the checkpoint and exit 0. Every action is one log line (log.py);
  `--metrics-port` serves counters, durations and the fan-in delay to Prometheus (metrics.py).

Nothing is deleted unless watch was started with `--allow-delete`, and targeted reconciles never delete
(they see a handful of users: what they do not see is not gone).
"""

from .checkpoint import CHECKPOINT_DB, CHECKPOINT_ID
from .log import ActionLog
from .loop import Watcher, run, stop_on_signals
from .metrics import Metrics
from .settings import Settings

__all__ = ["CHECKPOINT_DB", "CHECKPOINT_ID", "ActionLog", "Metrics", "Settings", "Watcher", "run", "stop_on_signals"]
