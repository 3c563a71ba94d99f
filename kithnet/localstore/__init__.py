"""The member's encrypted local store: SQLCipher database, schema and migrations, the
ingest pipeline, queries for the screens, and backups (docs/storage.md). Knows no network."""
