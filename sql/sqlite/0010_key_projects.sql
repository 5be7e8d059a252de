-- A key may be limited to some projects of its org (a JSON array of ids);
-- NULL: every project.
ALTER TABLE api_keys ADD COLUMN projects TEXT;
