"""The durable benchmark behind `bench/run`: a private PostgreSQL cluster, the one-row-per-commit
limits of both databases (pgbench, sqlite3), the platform's concurrency sweep, CPU from /proc."""
