/// The advisory lock every test takes, in the transaction that makes the change, before it
/// changes the privileges of what tests share on the test database (the `public` schema, the
/// migrations table): PostgreSQL 15 updates an object's privileges without a lock of its own, so
/// of two changes at once (one test's GRANT, another's DROP OWNED) one waits for the other and
/// then fails with "tuple concurrently updated".
public let sharedPrivilegesLock = "SELECT pg_advisory_xact_lock(hashtext('test:shared-privileges'))"
