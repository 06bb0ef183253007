"""Table definitions shared in spirit by both backends (each speaks its own SQL dialect)."""

CHAIN_MIGRATION = 4  # the migration that creates the evidence chain and builds it over old rows

SQLITE_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id    TEXT PRIMARY KEY,
    created_at     TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    action_type    TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    policy_hash    TEXT NOT NULL,
    context_digest TEXT NOT NULL,
    request_id     TEXT,
    request_digest TEXT,
    record         BLOB NOT NULL
);
-- decision_id is a ULID, so the primary key already orders decisions by creation time; the
-- composite indexes below end in created_at for time ranges within a tenant or a verdict.
CREATE INDEX IF NOT EXISTS decisions_tenant_action ON decisions (tenant_id, action_type, created_at);
CREATE INDEX IF NOT EXISTS decisions_verdict ON decisions (verdict, created_at);
CREATE INDEX IF NOT EXISTS decisions_context_digest ON decisions (context_digest);
-- Idempotency keys live on the decision row itself (one b-tree fewer per commit than a
-- separate table); the unique index is the key store and the view names it.
CREATE UNIQUE INDEX IF NOT EXISTS decisions_idempotency
    ON decisions (tenant_id, request_id) WHERE request_id IS NOT NULL;
CREATE VIEW IF NOT EXISTS idempotency_keys AS
    SELECT tenant_id, request_id, request_digest, decision_id FROM decisions
    WHERE request_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS decision_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    decision_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS decision_events_decision ON decision_events (decision_id, seq);
CREATE TABLE IF NOT EXISTS memory_items (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    memory_id          TEXT NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL,
    action_type        TEXT NOT NULL,
    label              TEXT NOT NULL,
    summary            TEXT NOT NULL,
    source_decision_id TEXT,
    features           BLOB NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_items_group ON memory_items (tenant_id, action_type, seq);
CREATE TABLE IF NOT EXISTS policy_snapshots (
    policy_hash    TEXT PRIMARY KEY,
    policy_id      TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    text           TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON decision_events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON decision_events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS memory_no_update BEFORE UPDATE ON memory_items
BEGIN SELECT RAISE(ABORT, 'memory items are append-only'); END;
CREATE TRIGGER IF NOT EXISTS memory_no_delete BEFORE DELETE ON memory_items
BEGIN SELECT RAISE(ABORT, 'memory items are append-only'); END;
""",
    # A decision labeled again supersedes its earlier memory item: readers find the item a new
    # one replaces through this index (memory_items_since's supersedes_seq).
    2: """
CREATE INDEX IF NOT EXISTS memory_items_source ON memory_items (source_decision_id, seq);
""",
    # `lumyn memory prune`: items created before `before` (of one tenant, or every tenant when
    # tenant_id is NULL) leave similarity; the items and their events stay.
    3: """
CREATE TABLE IF NOT EXISTS memory_prunes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT,
    before    TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS memory_prunes_no_update BEFORE UPDATE ON memory_prunes
BEGIN SELECT RAISE(ABORT, 'memory prunes are append-only'); END;
CREATE TRIGGER IF NOT EXISTS memory_prunes_no_delete BEFORE DELETE ON memory_prunes
BEGIN SELECT RAISE(ABORT, 'memory prunes are append-only'); END;
""",
    # The evidence chain (lumyn.integrity.chain): one entry per decision and event, numbered per
    # tenant in commit order. Opening an older database builds it once over the stored rows.
    4: """
CREATE TABLE IF NOT EXISTS chain_entries (
    tenant_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    event_id    TEXT,
    prev_hash   BLOB NOT NULL,
    entry_hash  BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chain_entries_decision ON chain_entries (decision_id);
CREATE TRIGGER IF NOT EXISTS chain_no_update BEFORE UPDATE ON chain_entries
BEGIN SELECT RAISE(ABORT, 'chain entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS chain_no_delete BEFORE DELETE ON chain_entries
BEGIN SELECT RAISE(ABORT, 'chain entries are append-only'); END;
""",
}

# memory_items_since: each item with the seq of the item of the same decision it supersedes.
# Seq order is commit order in both backends, so "the latest label wins" is the same everywhere.
MEMORY_SINCE_SQL = (
    "SELECT m.seq, m.memory_id, m.label, m.summary, m.source_decision_id, m.features, "
    "m.created_at, (SELECT max(p.seq) FROM memory_items p WHERE m.source_decision_id IS NOT NULL "
    "AND p.source_decision_id = m.source_decision_id AND p.seq < m.seq) "
    "FROM memory_items m WHERE m.tenant_id = {0} AND m.action_type = {0} AND m.seq > {0} "
    "ORDER BY m.seq"
)

EXPECTED_TABLES = (
    "decisions",
    "decision_events",
    "memory_items",
    "policy_snapshots",
    "schema_version",
    "memory_prunes",
    "chain_entries",
)

# Lowest and highest tenant id stored: two index probes, equal when one tenant (or none) is.
TENANT_SPAN = (
    "SELECT (SELECT min(tenant_id) FROM decisions), (SELECT max(tenant_id) FROM decisions)"
)

# The prune cutoff in force for a tenant; and how many of its items are older than a cutoff.
PRUNE_CUTOFF_SQL = ("SELECT max(before) FROM memory_prunes "
                    "WHERE tenant_id = {0} OR tenant_id IS NULL")
PRUNED_COUNT_SQL = ("SELECT count(*) FROM memory_items WHERE created_at < {0} "
                    "AND (CAST({0} AS TEXT) IS NULL OR tenant_id = {0})")


def limit_clause(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


# What `lumyn verify` reads (lumyn.integrity.verify.ChainView), the same SQL on both backends
# (record/data columns differ: {record} and {data}); each with the column a tenant filter
# applies to. `{where}` becomes "<column> = ? AND" or nothing. The decision and event rows are
# read in storage order with their own entry (an index lookup each); links are checked by a
# self-join that returns only the broken ones.
_CHAIN_VIEW_SQL = {
    "decisions": (
        "SELECT d.tenant_id, d.decision_id, d.{record}, c.seq, c.prev_hash, c.entry_hash "
        "FROM decisions d LEFT JOIN chain_entries c "
        "ON c.decision_id = d.decision_id AND c.event_id IS NULL WHERE {{where}} TRUE",
        "d.tenant_id"),
    "events": (
        "SELECT d.tenant_id, e.event_id, e.decision_id, e.at, e.type, e.{data}, c.seq, "
        "c.prev_hash, c.entry_hash FROM decision_events e "
        "LEFT JOIN decisions d ON d.decision_id = e.decision_id "
        "LEFT JOIN chain_entries c ON c.decision_id = e.decision_id AND c.event_id = e.event_id "
        "WHERE {{where}} TRUE",
        "d.tenant_id"),
    "orphans": (
        "SELECT c.tenant_id, c.seq, c.decision_id, c.event_id, e.decision_id "
        "FROM chain_entries c "
        "LEFT JOIN decisions d ON c.event_id IS NULL AND d.decision_id = c.decision_id "
        "LEFT JOIN decision_events e ON c.event_id IS NOT NULL AND e.event_id = c.event_id "
        "WHERE {{where}} ((c.event_id IS NULL AND d.decision_id IS NULL) OR "
        "(c.event_id IS NOT NULL AND (e.event_id IS NULL OR e.decision_id <> c.decision_id)))",
        "c.tenant_id"),
    "broken_links": (
        "SELECT c.tenant_id, c.seq, c.decision_id, c.prev_hash, p.seq, p.decision_id "
        "FROM chain_entries c LEFT JOIN chain_entries p "
        "ON p.tenant_id = c.tenant_id AND p.seq = c.seq - 1 "
        "WHERE {{where}} ((c.seq = 1 AND c.prev_hash <> {genesis}) OR (c.seq <> 1 AND "
        "(p.seq IS NULL OR p.entry_hash <> c.prev_hash))) ORDER BY c.tenant_id, c.seq",
        "c.tenant_id"),
    "heads": (
        "SELECT c.tenant_id, c.seq, c.entry_hash, c.decision_id FROM chain_entries c "
        "JOIN (SELECT tenant_id, max(seq) AS seq FROM chain_entries GROUP BY tenant_id) m "
        "ON m.tenant_id = c.tenant_id AND m.seq = c.seq WHERE {{where}} TRUE",
        "c.tenant_id"),
}
CHAIN_VIEW = {
    name: (sql.format(record="record", data="data", genesis="X'" + "00" * 32 + "'"), where)
    for name, (sql, where) in _CHAIN_VIEW_SQL.items()
}
CHAIN_VIEW_PG = {
    name: (sql.format(record="record_json", data="data_json",
                      genesis="'\\x" + "00" * 32 + "'::bytea"), where)
    for name, (sql, where) in _CHAIN_VIEW_SQL.items()
}
