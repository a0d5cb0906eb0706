"""Every PostgreSQL advisory-lock key Watcher takes, in one place so none collide.

Session-level locks are held for a connection's life; transaction-level ones
(`pg_advisory_xact_lock`) until the transaction ends. The values are documented (operations
docs): another application sharing the database must not use them.
"""

from __future__ import annotations

# Session lock of every online migration run (watcher/db/migrations/env.py): replicas
# starting at once on one database migrate one at a time.
MIGRATION = 0x57A7_3160
# Session lock of the scheduler's leader, on a dedicated connection; the default of
# WATCHER_LEADER_LOCK_ID (two Watchers sharing a database must set different ones).
LEADER_DEFAULT = 0x57A7_C4E2
# Transaction lock of every writer of address lineage: a closure rebuild reads then writes
# a whole connected component.
LINEAGE = 0x11AE_A6E0
# Transaction lock of OpenLineage re-parenting: two moves in one branch of the execution tree
# must not interleave their closure edits.
REPARENT = 0x0E7E_A9E1
# First half of the two-key transaction locks of OpenLineage ingestion (the second is a hash
# of a job's pipeline name or a runId): the events of one job or run are serialised. Two-key
# locks live in a key space of their own, apart from the single-key ones above.
OPENLINEAGE_RUN = 0x0E7E_A9E2
# Transaction lock of the incidents job: two runs (a leadership handover) place problems
# one at a time, so each change is written once.
INCIDENTS = 0x1C1D_E475
