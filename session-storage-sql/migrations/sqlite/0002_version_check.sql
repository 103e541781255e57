-- Versions are 1..=2^53-1 (session_core::Version::MAX) in every store.
-- SQLite cannot add a CHECK constraint to an existing table, and rebuilding
-- the table would fail on (or drop) rows already stored, so the same check
-- is two triggers: every row written from now on is checked; rows already
-- stored are kept, and the store reports them as corrupt.
CREATE TRIGGER "{{name}}_version_in_range_insert" BEFORE INSERT ON {{table}}
WHEN NEW.version < 1 OR NEW.version > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: version_in_range');
END;
CREATE TRIGGER "{{name}}_version_in_range_update" BEFORE UPDATE OF version ON {{table}}
WHEN NEW.version < 1 OR NEW.version > 9007199254740991
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: version_in_range');
END;
