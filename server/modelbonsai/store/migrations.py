"""Schema migrations of `lineage.sqlite`, applied in order; `schema_version` holds how many ran.

Append to MIGRATIONS, never edit a released entry: a store created by an older Bonsai is brought
up to date on open, and one created by a newer Bonsai is refused rather than misread.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: the initial schema
    [
        """CREATE TABLE models (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            parent_id TEXT,
            op TEXT,
            params_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'ok',
            status_reason TEXT NOT NULL DEFAULT '',
            artifact TEXT NOT NULL,
            created REAL NOT NULL,
            seed INTEGER NOT NULL DEFAULT 0,
            versions_json TEXT NOT NULL DEFAULT '{}',
            experiment_file TEXT,
            variant TEXT,
            step INTEGER NOT NULL DEFAULT 0,
            fingerprint TEXT NOT NULL DEFAULT '',
            base_spec_json TEXT,
            complete INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX models_parent ON models(parent_id)",
        "CREATE INDEX models_name ON models(name)",
        "CREATE INDEX models_fingerprint ON models(fingerprint)",
        """CREATE TABLE metrics (
            model_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            unit TEXT NOT NULL DEFAULT '',
            higher_is_better INTEGER NOT NULL DEFAULT 1,
            headline INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (model_id, name)
        )""",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            experiment_file TEXT NOT NULL,
            variants_json TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            started REAL NOT NULL,
            finished REAL,
            failures_json TEXT NOT NULL DEFAULT '{}',
            pid INTEGER,
            host TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE cache (
            kind TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            key_json TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (kind, key_hash)
        )""",
    ],
    # 2: how a metric was measured ("median of 20 runs, batch 32"), shown in tooltips
    [
        "ALTER TABLE metrics ADD COLUMN detail TEXT NOT NULL DEFAULT ''",
    ],
    # 3: a metric may be NaN (a collapsed model's perplexity); SQLite stores NaN as NULL, so the
    # value column must accept NULL (read back as NaN). SQLite cannot drop NOT NULL in place.
    [
        """CREATE TABLE metrics_v3 (
            model_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL,
            unit TEXT NOT NULL DEFAULT '',
            higher_is_better INTEGER NOT NULL DEFAULT 1,
            headline INTEGER NOT NULL DEFAULT 0,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (model_id, name)
        )""",
        "INSERT INTO metrics_v3 SELECT model_id, name, value, unit, higher_is_better, headline, detail FROM metrics",
        "DROP TABLE metrics",
        "ALTER TABLE metrics_v3 RENAME TO metrics",
    ],
    # 4: what a model's metrics and outputs were evaluated with (the task settings): a model's
    # weights do not depend on its evaluation, so this is kept apart from `fingerprint`. NULL
    # (rows of older stores) means unknown, which a run treats as different: re-evaluated once.
    [
        "ALTER TABLE models ADD COLUMN eval_fingerprint TEXT",
    ],
    # 5: one model per fingerprint. `model_names`: the other names a model answers to (a variant
    # or step whose fingerprint matched a model stored under another name: `bonsai show C` finds
    # B's model). `claims`: a fingerprint being made by a run, taken before the work starts, so
    # two processes never make the same model (the second waits for it, or takes over the claim
    # of a process that died).
    [
        """CREATE TABLE model_names (
            experiment_file TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            model_id TEXT NOT NULL,
            variant TEXT,
            step INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            PRIMARY KEY (experiment_file, name)
        )""",
        "CREATE INDEX model_names_model ON model_names(model_id)",
        """CREATE TABLE claims (
            fingerprint TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            created REAL NOT NULL
        )""",
    ],
    # 6: latency that survives a busy machine. A metric may carry its spread (same unit as its
    # value; NULL: none known) and a noisy flag; `measurements` keeps every latency measurement of
    # a model (store/measurements.py), and the stored metric is the most trustworthy of them, so
    # a new measurement never silently replaces a better one.
    [
        "ALTER TABLE metrics ADD COLUMN spread REAL",
        "ALTER TABLE metrics ADD COLUMN noisy INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE measurements (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            spread REAL NOT NULL,
            noisy INTEGER NOT NULL,
            rounds INTEGER NOT NULL,
            calls INTEGER NOT NULL,
            device TEXT NOT NULL,
            batch_size INTEGER NOT NULL,
            method TEXT NOT NULL,
            measured REAL NOT NULL,
            load REAL,
            wall REAL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX measurements_model ON measurements(model_id, name)",
    ],
    # 7: models brought in from another tool (`bonsai import-cc`): where each came from, as JSON
    # ({"tool", "file", "id"}); NULL for the models Bonsai made. Such a model has its recipe and
    # metrics, no weights, so comparisons that need weights say so instead of failing.
    ["ALTER TABLE models ADD COLUMN imported_json TEXT"],
    # 8: sensitivity scans (scan/): one row per complete scan, written in one transaction at its
    # end (an interrupted scan leaves nothing listed), found again by its fingerprint (the base,
    # what was scanned and how, the task's evaluation settings).
    [
        """CREATE TABLE scans (
            id TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            experiment_file TEXT,
            base_fingerprint TEXT NOT NULL,
            created REAL NOT NULL,
            result_json TEXT NOT NULL
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
