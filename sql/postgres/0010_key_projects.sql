-- As sql/sqlite/0010_key_projects.sql.
ALTER TABLE api_keys ADD COLUMN projects jsonb;
