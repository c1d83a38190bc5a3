-- Test-only migration: fails in a database that has a `test_fail_here` table (so a test can make
-- one chosen database fail), and is recorded once everywhere else.
DO $$
BEGIN
    IF to_regclass('test_fail_here') IS NOT NULL THEN
        RAISE EXCEPTION 'this database is marked to fail migration {version}';
    END IF;
END $$;
INSERT INTO test_applications (version) VALUES ({version});
