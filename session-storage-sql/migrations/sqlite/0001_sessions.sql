-- One row per session; times are Unix milliseconds on SQLite's clock.
CREATE TABLE {{table}} (
    id          TEXT    NOT NULL PRIMARY KEY,
    version     INTEGER NOT NULL,
    metadata    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    ttl_ms      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX {{index}} ON {{table}} (expires_at);
