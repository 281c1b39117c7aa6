import GRDB

/// The database schema, as an ordered list of named migrations.
///
/// Migrations are append-only: a released migration is never edited, renamed, reordered or removed,
/// because databases in the field record which names they have applied and would otherwise skip or
/// repeat work. To change the schema, append a new migration. Each one is plain SQL against the raw
/// schema, so it never changes meaning when the Swift records change.
enum Schema {
    /// The migrations in the order they must run.
    static let migrations: [(name: String, sql: String)] = [
        (
            "v1-operations",
            """
            CREATE TABLE operations (
                id TEXT PRIMARY KEY NOT NULL,
                kind TEXT NOT NULL,
                requester TEXT NOT NULL,
                environment TEXT NOT NULL,
                model TEXT,
                "release" TEXT,
                namespace TEXT,
                kube_context TEXT,
                state TEXT NOT NULL,
                plan TEXT CHECK (plan IS NULL OR json_valid(plan)),
                plan_digest TEXT,
                command TEXT NOT NULL,
                thread TEXT,
                outcome TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX operations_environment_model ON operations (environment, model);
            CREATE INDEX operations_state ON operations (state);
            """
        ),
        (
            "v1-journal",
            """
            CREATE TABLE journal (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                operation_id TEXT NOT NULL REFERENCES operations (id),
                at INTEGER NOT NULL,
                state TEXT NOT NULL,
                message TEXT NOT NULL,
                duration_ms INTEGER
            ) STRICT;
            CREATE INDEX journal_operation ON journal (operation_id, id);
            """
        ),
        (
            "v1-audit",
            """
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                at INTEGER NOT NULL,
                actor TEXT NOT NULL,
                "action" TEXT NOT NULL,
                environment TEXT,
                subject TEXT,
                outcome TEXT NOT NULL,
                operation_id TEXT,
                detail TEXT
            ) STRICT;
            CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN
                SELECT RAISE(ABORT, 'the audit log is append-only');
            END;
            CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN
                SELECT RAISE(ABORT, 'the audit log is append-only');
            END;
            -- INSERT OR REPLACE deletes the old row without firing DELETE triggers.
            CREATE TRIGGER audit_no_replace BEFORE INSERT ON audit
            WHEN EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
            BEGIN
                SELECT RAISE(ABORT, 'the audit log is append-only');
            END;
            """
        ),
        (
            "v1-verifications",
            """
            CREATE TABLE verifications (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                model TEXT NOT NULL,
                environment TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                at INTEGER NOT NULL,
                latency_ms INTEGER NOT NULL,
                revision INTEGER
            ) STRICT;
            CREATE INDEX verifications_model_environment ON verifications (model, environment, at);
            """
        ),
        (
            "v1-locks",
            """
            CREATE TABLE locks (
                environment TEXT PRIMARY KEY NOT NULL,
                holder TEXT NOT NULL,
                reason TEXT,
                since INTEGER NOT NULL
            ) STRICT;
            """
        ),
        (
            "v2-operation-revision",
            """
            ALTER TABLE operations ADD COLUMN revision INTEGER;
            CREATE INDEX operations_release_state ON operations (release, state);
            """
        ),
        (
            "v3-registrations",
            """
            CREATE TABLE registrations (
                model TEXT NOT NULL,
                environment TEXT NOT NULL,
                state TEXT NOT NULL,
                endpoints TEXT NOT NULL CHECK (json_valid(endpoints)),
                changed_by TEXT NOT NULL,
                changed_at INTEGER NOT NULL,
                reason TEXT,
                PRIMARY KEY (environment, model)
            ) STRICT;
            """
        ),
        (
            // Every write of a registration names the version it decided from (compare-and-set).
            // Rows written before this migration start at version 1.
            "v4-registration-version",
            """
            ALTER TABLE registrations ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
            """
        ),
        (
            // Each audit row gets the SHA-256 of its canonical content chained to the row before it
            // (see `AuditChain`). Rows written before this migration are chained by its Swift step
            // (`steps`), which lifts the update trigger for that one pass only; from then on every
            // insert must carry a hash.
            "v5-audit-chain",
            """
            ALTER TABLE audit ADD COLUMN channel TEXT;
            ALTER TABLE audit ADD COLUMN os_user TEXT;
            ALTER TABLE audit ADD COLUMN previous_hash TEXT;
            ALTER TABLE audit ADD COLUMN hash TEXT;
            DROP TRIGGER audit_no_update;
            """
        ),
        (
            // Every Helm revision an operation made (a failed upgrade and its automatic rollback),
            // as a JSON array of integers; NULL for operations recorded before it existed.
            "v6-operation-revisions",
            """
            ALTER TABLE operations ADD COLUMN revisions TEXT CHECK (revisions IS NULL OR json_valid(revisions));
            """
        ),
        (
            // Operations that outlive their command: the request as data (to plan and run it again
            // after a restart), the status card, what was read before side effects, the daemon that
            // owns it with its heartbeat, and a cancel asked for elsewhere. `state` has no CHECK on
            // its values, so the states added with it (awaiting_approval, approved, denied, expired,
            // interrupted) need no change. Event ids make intake idempotent: a redelivered chat event
            // finds its id and starts nothing.
            "v7-operation-intake-and-ownership",
            """
            ALTER TABLE operations ADD COLUMN request TEXT CHECK (request IS NULL OR json_valid(request));
            ALTER TABLE operations ADD COLUMN card_channel TEXT;
            ALTER TABLE operations ADD COLUMN card_id TEXT;
            ALTER TABLE operations ADD COLUMN checkpoint TEXT CHECK (checkpoint IS NULL OR json_valid(checkpoint));
            ALTER TABLE operations ADD COLUMN owner_instance TEXT;
            ALTER TABLE operations ADD COLUMN owner_host TEXT;
            ALTER TABLE operations ADD COLUMN owner_pid INTEGER;
            ALTER TABLE operations ADD COLUMN heartbeat_at INTEGER;
            ALTER TABLE operations ADD COLUMN cancel_requested_by TEXT;
            ALTER TABLE operations ADD COLUMN cancel_requested_at INTEGER;
            CREATE INDEX operations_owner ON operations (owner_instance, state) WHERE owner_instance IS NOT NULL;
            CREATE TABLE inbound_events (
                id TEXT PRIMARY KEY NOT NULL,
                accepted_at INTEGER NOT NULL
            ) STRICT;
            CREATE INDEX inbound_events_accepted_at ON inbound_events (accepted_at);
            """
        ),
        (
            // Approvals: the open request of an operation awaiting one (the digest it binds to, how
            // many approvals, until when) with the approvals given, as JSON.
            "v8-operation-approval",
            """
            ALTER TABLE operations ADD COLUMN approval TEXT CHECK (approval IS NULL OR json_valid(approval));
            """
        ),
    ]

    /// Work a migration does after its SQL that SQL alone cannot do, keyed by migration name. Like
    /// the SQL, a step reads and writes raw columns only and is never edited once released.
    static let steps: [String: @Sendable (Database) throws -> Void] = [
        "v5-audit-chain": { db in
            try AuditChain.chainUnhashedRows(db)
            try db.execute(
                sql: """
                    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
                    BEGIN
                        SELECT RAISE(ABORT, 'the audit log is append-only');
                    END;
                    -- A row that would replace another is left to audit_no_replace and its message.
                    CREATE TRIGGER audit_chained BEFORE INSERT ON audit
                    WHEN (NEW.hash IS NULL OR NEW.previous_hash IS NULL)
                        AND NOT EXISTS (SELECT 1 FROM audit WHERE id = NEW.id)
                    BEGIN
                        SELECT RAISE(ABORT, 'audit rows must carry their hash chain');
                    END;
                    """
            )
        },
    ]

    /// The migrator that brings any older database up to date. It never erases a database whose
    /// schema differs: that would destroy the audit log.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for migration in migrations {
            let sql = migration.sql
            migrator.registerMigration(migration.name) { db in
                try db.execute(sql: sql)
                try steps[migration.name]?(db)
            }
        }
        return migrator
    }
}
