-- A snapshot's data is written chunk by chunk, each chunk in a transaction of
-- its own, under a generation of its own; `snapshot.gen` names the generation
-- that is whole. (Storing a big snapshot in one transaction held SQLite's one
-- write connection, and so the log, for as long as it took.)
CREATE TABLE snapshot_data (
    gen  INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    data BLOB    NOT NULL,
    PRIMARY KEY (gen, seq)
);
INSERT INTO snapshot_data (gen, seq, data) SELECT 0, seq, data FROM snapshot_chunk;
DROP TABLE snapshot_chunk;
ALTER TABLE snapshot ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
