-- A snapshot's data is written chunk by chunk, each chunk in a transaction of
-- its own, under a generation of its own; `snapshot.gen` names the generation
-- that is whole. (Storing a big snapshot in one transaction held the log's
-- writes back for as long as it took.)
CREATE TABLE snapshot_data (
    gen  BIGINT   NOT NULL,
    seq  INT      NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (gen, seq)
) ENGINE = InnoDB;
INSERT INTO snapshot_data (gen, seq, data) SELECT 0, seq, data FROM snapshot_chunk;
DROP TABLE snapshot_chunk;
ALTER TABLE snapshot ADD COLUMN gen BIGINT NOT NULL DEFAULT 0;
