-- One row per session. `{{table}}` is the validated, quoted, schema-qualified table.
CREATE TABLE {{table}} (
    id          text COLLATE "C" PRIMARY KEY,
    version     bigint      NOT NULL,
    metadata    text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    ttl         interval    NOT NULL
);
CREATE INDEX ON {{table}} (expires_at);
COMMENT ON TABLE {{table}} IS 'session-storage-sql: MCP gateway sessions (metadata is a JSON object of strings)';
