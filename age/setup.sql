-- Apache AGE setup, run by Strata at start when AGE is enabled.
-- Every pooled connection also runs session.sql.
CREATE EXTENSION IF NOT EXISTS age;
