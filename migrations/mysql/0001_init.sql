-- taskd schema for MySQL / MariaDB (InnoDB, utf8mb4).
-- Ids, labels and assignees use utf8mb4_bin: comparisons are exact and the
-- order of ids equals Rust's byte order, which keyset paging relies on.
-- u64 values (log index, term, version) are stored as BIGINT.

CREATE TABLE tasks (
    id          VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    title       TEXT         CHARACTER SET utf8mb4 NOT NULL,
    description MEDIUMTEXT   CHARACTER SET utf8mb4 NOT NULL,
    status      INT          NOT NULL,
    priority    INT          NOT NULL,
    -- 9223372036854775807 (i64::MAX) = no deadline, so that "deadline" sorts last
    deadline    BIGINT       NOT NULL,
    assignee    VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    -- JSON array of strings, in the order the client gave them
    labels      TEXT         CHARACTER SET utf8mb4 NOT NULL,
    create_time BIGINT       NOT NULL,
    update_time BIGINT       NOT NULL,
    version     BIGINT       NOT NULL,
    PRIMARY KEY (id),
    KEY tasks_create_time (create_time, id),
    KEY tasks_deadline (deadline, id),
    KEY tasks_status (status, create_time, id),
    KEY tasks_assignee (assignee, create_time, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE task_labels (
    label   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    task_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    PRIMARY KEY (label, task_id),
    KEY task_labels_task (task_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE request_ids (
    request_id  VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    task_id     VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    create_time BIGINT       NOT NULL,
    PRIMARY KEY (request_id),
    KEY request_ids_create_time (create_time)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE raft_log (
    log_index BIGINT   NOT NULL,
    term      BIGINT   NOT NULL,
    payload   LONGBLOB NOT NULL,
    PRIMARY KEY (log_index)
) ENGINE = InnoDB;

CREATE TABLE raft_state (
    name  VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    value MEDIUMBLOB  NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB;

CREATE TABLE sm_meta (
    id           INT        NOT NULL,
    last_applied MEDIUMBLOB NULL,
    membership   MEDIUMBLOB NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

-- The latest snapshot: its meta here, its data split over snapshot_chunk rows
-- (each well under max_allowed_packet, whatever the snapshot's size).
CREATE TABLE snapshot (
    id   INT        NOT NULL,
    meta MEDIUMBLOB NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

CREATE TABLE snapshot_chunk (
    seq  INT      NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (seq)
) ENGINE = InnoDB;
