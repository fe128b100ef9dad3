"""The audit, split into shards that workers re-measure in parallel, and combined again.

``plan`` cuts the tree into complete subtrees; ``verify`` re-measures one shard (leaf hashes,
every DSSE signature via ``leaf_signatures``, the hash chain, interior hashes, checkpoints);
``combine`` merges the shard roots and adds the checks that need the whole picture; ``runs``
records audit runs for the Celery workers (``audits``, ``audit_shards``); ``local`` runs the
same shards on a process pool in one process (``provledger audit --signatures``); ``publish``
is the periodic checkpoint duty. This package face only re-exports.
"""

from ledger.services.shards.combine import combine_shards
from ledger.services.shards.leaf_signatures import check_leaf_signatures
from ledger.services.shards.plan import (
    AUTO_MAX_LEVEL,
    AUTO_MIN_LEVEL,
    MAX_SHARD_LEVEL,
    TARGET_SHARDS,
    Shard,
    plan_shards,
    shard_level_for,
)
from ledger.services.shards.publish import publish_checkpoint
from ledger.services.shards.results import DistributedReport, ShardResult
from ledger.services.shards.runs import (
    SHARD_DONE,
    SHARD_PENDING,
    SOURCES,
    STATE_DONE,
    STATE_FAILED,
    STATE_QUEUED,
    STATE_RUNNING,
    audit_json,
    audit_progress,
    create_audit,
    fail_audit,
    finish_audit,
    get_audit,
    has_active_audit,
    list_audits,
    run_shard,
    withdraw_audit,
)
from ledger.services.shards.local import audit_signatures
from ledger.services.shards.verify import PROGRESS_EVERY, verify_shard

__all__ = [
    "AUTO_MAX_LEVEL",
    "AUTO_MIN_LEVEL",
    "MAX_SHARD_LEVEL",
    "PROGRESS_EVERY",
    "SHARD_DONE",
    "SHARD_PENDING",
    "SOURCES",
    "STATE_DONE",
    "STATE_FAILED",
    "STATE_QUEUED",
    "STATE_RUNNING",
    "TARGET_SHARDS",
    "DistributedReport",
    "Shard",
    "ShardResult",
    "audit_json",
    "audit_signatures",
    "audit_progress",
    "check_leaf_signatures",
    "combine_shards",
    "create_audit",
    "fail_audit",
    "finish_audit",
    "get_audit",
    "has_active_audit",
    "list_audits",
    "plan_shards",
    "publish_checkpoint",
    "run_shard",
    "shard_level_for",
    "verify_shard",
    "withdraw_audit",
]
