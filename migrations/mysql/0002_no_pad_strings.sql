-- utf8mb4_bin is a PAD SPACE collation: it compares 'k' and 'k ' as equal, so
-- an id, request_id, assignee or label with trailing spaces matched another
-- value on MySQL and not on SQLite (and request_id dedupe broke). VARBINARY
-- compares bytes, with no padding, on MariaDB and MySQL 8 alike (the NO PAD
-- collations differ by server: utf8mb4_nopad_bin vs utf8mb4_0900_bin), and
-- its byte order is Rust's `str` order, which keyset paging relies on.
-- Lengths are bytes: 4 per character of the API's limits. The values stay
-- UTF-8 (only the API writes them); the store decodes them as bytes already.

ALTER TABLE tasks
    MODIFY id       VARBINARY(256)  NOT NULL,
    MODIFY assignee VARBINARY(1024) NOT NULL;

ALTER TABLE task_labels
    MODIFY label   VARBINARY(256) NOT NULL,
    MODIFY task_id VARBINARY(256) NOT NULL;

ALTER TABLE request_ids
    MODIFY request_id VARBINARY(512) NOT NULL,
    MODIFY task_id    VARBINARY(256) NOT NULL;
