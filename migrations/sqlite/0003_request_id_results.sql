-- Every kind of write takes a request_id now (issue 7): remember what was
-- asked (a SHA-256 of the request, to refuse a key reused for a different
-- one) and, for updates and deletes, the first result, returned on a retry.
-- Creates keep result NULL: a retry returns the task as it is.
ALTER TABLE request_ids ADD COLUMN fingerprint BLOB NOT NULL DEFAULT x'';
ALTER TABLE request_ids ADD COLUMN result BLOB;
