-- taskd schema for SQLite. Text compares with the default BINARY collation
-- (memcmp), so the order of ids equals Rust's byte order, which keyset paging
-- relies on. u64 values (log index, term, version) are stored as INTEGER (i64).

CREATE TABLE tasks (
    id          TEXT    NOT NULL PRIMARY KEY,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    priority    INTEGER NOT NULL,
    -- 9223372036854775807 (i64::MAX) = no deadline, so that "deadline" sorts last
    deadline    INTEGER NOT NULL,
    assignee    TEXT    NOT NULL,
    -- JSON array of strings, in the order the client gave them
    labels      TEXT    NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    version     INTEGER NOT NULL
);
CREATE INDEX tasks_create_time ON tasks (create_time, id);
CREATE INDEX tasks_deadline ON tasks (deadline, id);
CREATE INDEX tasks_status ON tasks (status, create_time, id);
CREATE INDEX tasks_assignee ON tasks (assignee, create_time, id);

CREATE TABLE task_labels (
    label   TEXT NOT NULL,
    task_id TEXT NOT NULL,
    PRIMARY KEY (label, task_id)
) WITHOUT ROWID;
CREATE INDEX task_labels_task ON task_labels (task_id);

CREATE TABLE request_ids (
    request_id  TEXT    NOT NULL PRIMARY KEY,
    task_id     TEXT    NOT NULL,
    create_time INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX request_ids_create_time ON request_ids (create_time);

CREATE TABLE raft_log (
    log_index INTEGER NOT NULL PRIMARY KEY,
    term      INTEGER NOT NULL,
    payload   BLOB    NOT NULL
);

CREATE TABLE raft_state (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE sm_meta (
    id           INTEGER NOT NULL PRIMARY KEY,
    last_applied BLOB,
    membership   BLOB
);

-- The latest snapshot: its meta here, its data split over snapshot_chunk rows.
CREATE TABLE snapshot (
    id   INTEGER NOT NULL PRIMARY KEY,
    meta BLOB    NOT NULL
);

CREATE TABLE snapshot_chunk (
    seq  INTEGER NOT NULL PRIMARY KEY,
    data BLOB    NOT NULL
);
