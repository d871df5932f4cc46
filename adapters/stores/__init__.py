"""Stores behind the core's ports.

The exchange log (``AuditLog`` + ``AuditReader``) has three implementations with
one behaviour, checked by one contract suite (``tests/integration/test_audit_stores.py``):

- ``audit_sqlite.SqliteAuditLog``: one file, WAL, ``synchronous=FULL``, group commit;
- ``audit_postgres.PostgresAuditLog``: PostgreSQL, safe with several writer processes;
- ``audit_memory.InMemoryAuditLog``: the fake for unit tests, which can be told to fail.

``audit_signing`` signs and checks Merkle checkpoints (C2SP notes, Ed25519).
"""
