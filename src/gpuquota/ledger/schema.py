"""The ledger schema as an ordered list of migrations, applied in place and recorded in ``schema_version``.

Migrations are append-only: a released migration is never edited, a change is a new one. They run inside one
transaction under a database-wide lock (PostgreSQL advisory lock, SQLite BEGIN IMMEDIATE), so replicas that start
at the same moment against an empty database apply each migration exactly once.
"""

from __future__ import annotations

from gpuquota.ledger.database import Database, Tx
from gpuquota.ledger.types import LedgerError

# Templates: {id} an auto-increment primary key, {real} a double, {ts} a timestamp, {bool} a boolean.
# A statement given as (backend, sql) runs on that backend only.
Statement = str | tuple[str, str]
MIGRATIONS: tuple[tuple[Statement, ...], ...] = (
    # 1: reservations, their counter increments, the aggregate counters, the decision audit.
    (
        """CREATE TABLE reservations (
            id {id} PRIMARY KEY,
            request_uid TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL,
            kind TEXT NOT NULL,
            api_group TEXT NOT NULL,
            name TEXT NOT NULL,
            tenant TEXT NOT NULL,
            jurisdiction TEXT,
            tier TEXT,
            model TEXT,
            gpus {real} NOT NULL,
            tpp {real} NOT NULL,
            operations {real},
            operations_per_second {real} NOT NULL,
            max_runtime_s {real},
            profile TEXT NOT NULL,
            profile_version TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('reserved', 'running', 'settled', 'released', 'expired')),
            charge_day TEXT NOT NULL,
            reserved_at {ts} NOT NULL,
            started_at {ts},
            ended_at {ts},
            actual_operations {real},
            reason TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE INDEX reservations_active ON reservations (namespace, name, kind, api_group)
            WHERE state IN ('reserved', 'running')""",
        "CREATE INDEX reservations_reserved_at ON reservations (reserved_at)",
        """CREATE TABLE reservation_counters (
            reservation_id BIGINT NOT NULL REFERENCES reservations (id),
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            metric TEXT NOT NULL,
            amount {real} NOT NULL,
            PRIMARY KEY (reservation_id, scope, subject, metric)
        )""",
        """CREATE TABLE counters (
            scope TEXT NOT NULL,
            subject TEXT NOT NULL,
            metric TEXT NOT NULL,
            bucket TEXT NOT NULL,
            amount {real} NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, subject, metric, bucket)
        )""",
        """CREATE TABLE decisions (
            id {id} PRIMARY KEY,
            time {ts} NOT NULL,
            request_uid TEXT NOT NULL,
            operation TEXT NOT NULL,
            user_name TEXT NOT NULL,
            namespace TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            tenant TEXT,
            jurisdiction TEXT,
            tier TEXT,
            allowed {bool} NOT NULL,
            dry_run {bool} NOT NULL,
            message TEXT NOT NULL,
            rules TEXT NOT NULL,
            gpus {real} NOT NULL,
            model TEXT,
            tpp {real} NOT NULL,
            operations {real},
            profile TEXT NOT NULL,
            profile_version TEXT NOT NULL,
            reservation_id BIGINT REFERENCES reservations (id)
        )""",
    ),
    # 2: warnings on the audit record; indexes the compliance report reads by.
    (
        "ALTER TABLE decisions ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX decisions_time ON decisions (time)",
        "CREATE INDEX reservations_ended_at ON reservations (ended_at)",
    ),
    # 3: the cap check runs inside the reserving statement batch, so PostgreSQL commits or refuses in one round
    # trip (SQLite registers the same function on each connection, from ``counters.fits``).
    (
        (
            "postgresql",
            """CREATE OR REPLACE FUNCTION gpuquota_check_cap(
                idx integer, value double precision, deduct double precision, increment double precision,
                cap double precision
            ) RETURNS double precision LANGUAGE plpgsql AS $$
            DECLARE
                used double precision := value - deduct;
                total double precision := value - deduct + increment;
            BEGIN
                -- counters.fits: used + amount <= cap, with a tolerance of a few ulps
                IF total <= cap OR abs(total - cap) <= greatest(1e-12 * greatest(abs(total), abs(cap)), 1e-9) THEN
                    RETURN used;
                END IF;
                RAISE EXCEPTION 'gpuquota cap exceeded' USING DETAIL = idx::text || ' ' || used::text;
            END
            $$""",
        ),
        (
            "postgresql",
            """CREATE OR REPLACE FUNCTION gpuquota_reserve(
                r_uid text, r_namespace text, r_kind text, r_group text, r_name text, r_tenant text,
                r_jurisdiction text, r_tier text, r_model text, r_gpus double precision, r_tpp double precision,
                r_operations double precision, r_rate double precision, r_max_runtime double precision,
                r_profile text, r_profile_version text, r_state text, r_day text, r_at timestamptz,
                a_time timestamptz, a_text text[], a_flags boolean[], a_num double precision[],
                i_scope text[], i_subject text[], i_metric text[], i_amount double precision[],
                c_scope text[], c_subject text[], c_metric text[], c_bucket text[], c_amount double precision[],
                k_scope text[], k_subject text[], k_metric text[], k_low text[], k_high text[],
                k_deduct double precision[], k_increment double precision[], k_cap double precision[]
            ) RETURNS bigint LANGUAGE plpgsql AS $$
            -- The statement batch of reserving.batch_statements, run inside the server: one round trip. The audit
            -- record comes packed by type (a_text, a_flags, a_num: see postgres.audit_arrays).
            DECLARE
                rid bigint;
                value double precision;
            BEGIN
                INSERT INTO reservations (request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier,
                    model, gpus, tpp, operations, operations_per_second, max_runtime_s, profile, profile_version,
                    state, charge_day, reserved_at)
                VALUES (r_uid, r_namespace, r_kind, r_group, r_name, r_tenant, r_jurisdiction, r_tier, r_model,
                    r_gpus, r_tpp, r_operations, r_rate, r_max_runtime, r_profile, r_profile_version, r_state, r_day,
                    r_at)
                RETURNING id INTO rid;
                INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant,
                    jurisdiction, tier, allowed, dry_run, message, rules, warnings, gpus, model, tpp, operations,
                    profile, profile_version, reservation_id)
                VALUES (a_time, a_text[1], a_text[2], a_text[3], a_text[4], a_text[5], a_text[6], a_text[7],
                    a_text[8], a_text[9], a_flags[1], a_flags[2], a_text[10], a_text[11], a_text[12], a_num[1],
                    a_text[13], a_num[2], a_num[3], a_text[14], a_text[15], rid);
                INSERT INTO reservation_counters (reservation_id, scope, subject, metric, amount)
                SELECT rid, u.s, u.t, u.m, u.a FROM unnest(i_scope, i_subject, i_metric, i_amount) AS u(s, t, m, a);
                -- Rows are added to (and so locked) in the order given: the one global order.
                INSERT INTO counters (scope, subject, metric, bucket, amount)
                SELECT u.s, u.t, u.m, u.b, u.a
                FROM unnest(c_scope, c_subject, c_metric, c_bucket, c_amount) WITH ORDINALITY AS u(s, t, m, b, a, n)
                ORDER BY u.n
                ON CONFLICT (scope, subject, metric, bucket) DO UPDATE SET amount = counters.amount + excluded.amount;
                -- Each statement of a volatile function takes a fresh snapshot: these sums see every reservation
                -- committed before the locks above were granted.
                FOR i IN 1 .. coalesce(array_length(k_cap, 1), 0) LOOP
                    SELECT coalesce(sum(amount), 0) INTO value FROM counters
                    WHERE scope = k_scope[i] AND subject = k_subject[i] AND metric = k_metric[i]
                      AND bucket BETWEEN k_low[i] AND k_high[i];
                    PERFORM gpuquota_check_cap(i - 1, value, k_deduct[i], k_increment[i], k_cap[i]);
                END LOOP;
                RETURN rid;
            END
            $$""",
        ),
    ),
    # 4: identical denials folded into one record per UTC day (repeats, last seen), found by their fingerprint —
    # a loop of denied requests must not grow the ledger by a row each (docs/ledger.md, "Growth and sizing").
    (
        "ALTER TABLE decisions ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE decisions ADD COLUMN last_time {ts}",
        "ALTER TABLE decisions ADD COLUMN fingerprint TEXT",
        "CREATE INDEX decisions_fingerprint ON decisions (fingerprint, id) WHERE fingerprint IS NOT NULL",
    ),
    # 5: what runs is what is charged — the admitted object's uid (a re-created object is a new workload), the
    # releasing mark a DELETE sets (the reservation holds until its GPUs are gone), operations accrued from real
    # runtime, and the pods riding on each reservation within its GPU budget.
    (
        "ALTER TABLE reservations ADD COLUMN object_uid TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE reservations ADD COLUMN releasing_at {ts}",
        "ALTER TABLE reservations ADD COLUMN accrued_operations {real} NOT NULL DEFAULT 0",
        """CREATE TABLE riders (
            reservation_id BIGINT NOT NULL REFERENCES reservations (id),
            pod_uid TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            gpus {real} NOT NULL,
            admitted_at {ts} NOT NULL,
            gone_at {ts},
            PRIMARY KEY (reservation_id, pod_uid)
        )""",
        "CREATE INDEX riders_live ON riders (reservation_id) WHERE gone_at IS NULL",
        ("postgresql", "DROP FUNCTION gpuquota_reserve"),
        (
            "postgresql",
            """CREATE OR REPLACE FUNCTION gpuquota_reserve(
                r_uid text, r_namespace text, r_kind text, r_group text, r_name text, r_tenant text,
                r_jurisdiction text, r_tier text, r_model text, r_gpus double precision, r_tpp double precision,
                r_operations double precision, r_rate double precision, r_max_runtime double precision,
                r_profile text, r_profile_version text, r_state text, r_day text, r_at timestamptz, r_object_uid text,
                a_time timestamptz, a_text text[], a_flags boolean[], a_num double precision[],
                i_scope text[], i_subject text[], i_metric text[], i_amount double precision[],
                c_scope text[], c_subject text[], c_metric text[], c_bucket text[], c_amount double precision[],
                k_scope text[], k_subject text[], k_metric text[], k_low text[], k_high text[],
                k_deduct double precision[], k_increment double precision[], k_cap double precision[]
            ) RETURNS bigint LANGUAGE plpgsql AS $$
            -- The statement batch of reserving.batch_statements, run inside the server: one round trip (since
            -- migration 5 with the admitted object's uid). The audit
            -- record comes packed by type (a_text, a_flags, a_num: see postgres.audit_arrays).
            DECLARE
                rid bigint;
                value double precision;
            BEGIN
                INSERT INTO reservations (request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier,
                    model, gpus, tpp, operations, operations_per_second, max_runtime_s, profile, profile_version,
                    state, charge_day, reserved_at, object_uid)
                VALUES (r_uid, r_namespace, r_kind, r_group, r_name, r_tenant, r_jurisdiction, r_tier, r_model,
                    r_gpus, r_tpp, r_operations, r_rate, r_max_runtime, r_profile, r_profile_version, r_state, r_day,
                    r_at, r_object_uid)
                RETURNING id INTO rid;
                INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant,
                    jurisdiction, tier, allowed, dry_run, message, rules, warnings, gpus, model, tpp, operations,
                    profile, profile_version, reservation_id)
                VALUES (a_time, a_text[1], a_text[2], a_text[3], a_text[4], a_text[5], a_text[6], a_text[7],
                    a_text[8], a_text[9], a_flags[1], a_flags[2], a_text[10], a_text[11], a_text[12], a_num[1],
                    a_text[13], a_num[2], a_num[3], a_text[14], a_text[15], rid);
                INSERT INTO reservation_counters (reservation_id, scope, subject, metric, amount)
                SELECT rid, u.s, u.t, u.m, u.a FROM unnest(i_scope, i_subject, i_metric, i_amount) AS u(s, t, m, a);
                -- Rows are added to (and so locked) in the order given: the one global order.
                INSERT INTO counters (scope, subject, metric, bucket, amount)
                SELECT u.s, u.t, u.m, u.b, u.a
                FROM unnest(c_scope, c_subject, c_metric, c_bucket, c_amount) WITH ORDINALITY AS u(s, t, m, b, a, n)
                ORDER BY u.n
                ON CONFLICT (scope, subject, metric, bucket) DO UPDATE SET amount = counters.amount + excluded.amount;
                -- Each statement of a volatile function takes a fresh snapshot: these sums see every reservation
                -- committed before the locks above were granted.
                FOR i IN 1 .. coalesce(array_length(k_cap, 1), 0) LOOP
                    SELECT coalesce(sum(amount), 0) INTO value FROM counters
                    WHERE scope = k_scope[i] AND subject = k_subject[i] AND metric = k_metric[i]
                      AND bucket BETWEEN k_low[i] AND k_high[i];
                    PERFORM gpuquota_check_cap(i - 1, value, k_deduct[i], k_increment[i], k_cap[i]);
                END LOOP;
                RETURN rid;
            END
            $$""",
        ),
    ),
    # 6: many clusters, one ledger — every reservation and decision records the cluster that made it (what a
    # ledger held before belongs to cluster 'default', the name of a process given none); each cluster's name is
    # bound to its kube-system namespace uid on first start (clusters); the cluster scope's counters are per
    # cluster (subject: the cluster's name, was 'cluster'). Tenant, jurisdiction and tier counters stay fleet-wide.
    (
        "ALTER TABLE reservations ADD COLUMN cluster TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE decisions ADD COLUMN cluster TEXT NOT NULL DEFAULT 'default'",
        """CREATE INDEX reservations_cluster_active ON reservations (cluster, namespace, name, kind, api_group)
            WHERE state IN ('reserved', 'running')""",
        """CREATE TABLE clusters (
            name TEXT PRIMARY KEY,
            kube_system_uid TEXT,
            registered_at {ts} NOT NULL,
            last_start {ts} NOT NULL
        )""",
        """INSERT INTO clusters (name, kube_system_uid, registered_at, last_start)
            SELECT 'default', NULL, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
            WHERE EXISTS (SELECT 1 FROM reservations) OR EXISTS (SELECT 1 FROM decisions)""",
        """UPDATE counters SET subject = 'default' || substr(subject, 8)
            WHERE scope = 'cluster' AND (subject = 'cluster' OR subject LIKE 'cluster~%')""",
        """UPDATE reservation_counters SET subject = 'default' || substr(subject, 8)
            WHERE scope = 'cluster' AND (subject = 'cluster' OR subject LIKE 'cluster~%')""",
        ("postgresql", "DROP FUNCTION gpuquota_reserve"),
        (
            "postgresql",
            """CREATE OR REPLACE FUNCTION gpuquota_reserve(
                r_uid text, r_namespace text, r_kind text, r_group text, r_name text, r_tenant text,
                r_jurisdiction text, r_tier text, r_model text, r_gpus double precision, r_tpp double precision,
                r_operations double precision, r_rate double precision, r_max_runtime double precision,
                r_profile text, r_profile_version text, r_state text, r_day text, r_at timestamptz, r_object_uid text,
                r_cluster text,
                a_time timestamptz, a_text text[], a_flags boolean[], a_num double precision[],
                i_scope text[], i_subject text[], i_metric text[], i_amount double precision[],
                c_scope text[], c_subject text[], c_metric text[], c_bucket text[], c_amount double precision[],
                k_scope text[], k_subject text[], k_metric text[], k_low text[], k_high text[],
                k_deduct double precision[], k_increment double precision[], k_cap double precision[]
            ) RETURNS bigint LANGUAGE plpgsql AS $$
            -- The statement batch of reserving.batch_statements, run inside the server: one round trip (since
            -- migration 5 with the admitted object's uid, since 6 with the admitting cluster, r_cluster, on both
            -- rows). The audit record comes packed by type (a_text, a_flags, a_num: see postgres.audit_arrays).
            DECLARE
                rid bigint;
                value double precision;
            BEGIN
                INSERT INTO reservations (request_uid, namespace, kind, api_group, name, tenant, jurisdiction, tier,
                    model, gpus, tpp, operations, operations_per_second, max_runtime_s, profile, profile_version,
                    state, charge_day, reserved_at, object_uid, cluster)
                VALUES (r_uid, r_namespace, r_kind, r_group, r_name, r_tenant, r_jurisdiction, r_tier, r_model,
                    r_gpus, r_tpp, r_operations, r_rate, r_max_runtime, r_profile, r_profile_version, r_state, r_day,
                    r_at, r_object_uid, r_cluster)
                RETURNING id INTO rid;
                INSERT INTO decisions (time, request_uid, operation, user_name, namespace, kind, name, tenant,
                    jurisdiction, tier, allowed, dry_run, message, rules, warnings, gpus, model, tpp, operations,
                    profile, profile_version, cluster, reservation_id)
                VALUES (a_time, a_text[1], a_text[2], a_text[3], a_text[4], a_text[5], a_text[6], a_text[7],
                    a_text[8], a_text[9], a_flags[1], a_flags[2], a_text[10], a_text[11], a_text[12], a_num[1],
                    a_text[13], a_num[2], a_num[3], a_text[14], a_text[15], r_cluster, rid);
                INSERT INTO reservation_counters (reservation_id, scope, subject, metric, amount)
                SELECT rid, u.s, u.t, u.m, u.a FROM unnest(i_scope, i_subject, i_metric, i_amount) AS u(s, t, m, a);
                -- Rows are added to (and so locked) in the order given: the one global order.
                INSERT INTO counters (scope, subject, metric, bucket, amount)
                SELECT u.s, u.t, u.m, u.b, u.a
                FROM unnest(c_scope, c_subject, c_metric, c_bucket, c_amount) WITH ORDINALITY AS u(s, t, m, b, a, n)
                ORDER BY u.n
                ON CONFLICT (scope, subject, metric, bucket) DO UPDATE SET amount = counters.amount + excluded.amount;
                -- Each statement of a volatile function takes a fresh snapshot: these sums see every reservation
                -- committed before the locks above were granted.
                FOR i IN 1 .. coalesce(array_length(k_cap, 1), 0) LOOP
                    SELECT coalesce(sum(amount), 0) INTO value FROM counters
                    WHERE scope = k_scope[i] AND subject = k_subject[i] AND metric = k_metric[i]
                      AND bucket BETWEEN k_low[i] AND k_high[i];
                    PERFORM gpuquota_check_cap(i - 1, value, k_deduct[i], k_increment[i], k_cap[i]);
                END LOOP;
                RETURN rid;
            END
            $$""",
        ),
    ),
)

LATEST = len(MIGRATIONS)


def schema_version(tx: Tx) -> int:
    """The version recorded in ``schema_version`` (0 for an empty database)."""
    tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    rows = tx.execute("SELECT max(version) FROM schema_version")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def migrate(db: Database, target: int = LATEST) -> int:
    """Bring the schema to ``target`` (default: the latest); returns the version found before."""
    types = db.ddl_types()
    with db.migration_lock() as tx:
        found = schema_version(tx)
        if found > LATEST:
            raise LedgerError(
                f"the ledger schema is at version {found}, newer than this gpuquota knows ({LATEST}): upgrade gpuquota"
            )
        for version in range(found + 1, target + 1):
            for statement in MIGRATIONS[version - 1]:
                if isinstance(statement, tuple):
                    backend, sql = statement
                    if backend == db.name:
                        tx.execute(sql)  # verbatim: a function body has braces of its own
                else:
                    tx.execute(statement.format(**types))
            tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)", (version,))
        return found
