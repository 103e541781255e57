-- The last applied writes of each row, newest first: up to four fixed-width
-- entries `<write id>:<version as 16 digits>` separated by spaces (the
-- layout of session_core::write_log), so a write retried after a lost reply
-- is recognised instead of applied twice. Adding a column with a constant
-- default rewrites no rows: existing rows start with an empty list.
ALTER TABLE {{table}} ADD COLUMN writes text NOT NULL DEFAULT '';
