"""A local stand-in of the Supabase Storage HTTP API (storage-api 1.11.2).

The official `supabase` / `storage3` client talks to it unchanged: point SUPABASE_URL at
`StorageServer.url` and use a service-role key signed with the stack's JWT secret. Object rows
live in `storage.objects` / `storage.buckets` of a real PostgreSQL database (as on a hosted
project, so database backups see them); the bytes live on local disk.

It copies the real server's quirks on purpose (errors as HTTP 400 with the real status in the
body, case-insensitive v1 prefix matching, unescaped LIKE patterns, ...) so that the pipeline is
tested against what it will meet, not against a friendlier ideal. `Faults` lets tests inject
failures and malicious listings.

Layout: `app.py` (routes, auth, request plumbing), `buckets.py`, `objects.py` (upload, download,
info, delete, move, copy), `listing.py` (list v1 and v2), `keys.py` (key and mime rules),
`db.py` (connection pool), `blobs.py` (bytes on disk), `faults.py`, `server.py`.
"""

from supabackup_pipeline.dev.storage_api.app import create_app
from supabackup_pipeline.dev.storage_api.faults import Faults
from supabackup_pipeline.dev.storage_api.server import StorageServer, main

__all__ = ["Faults", "StorageServer", "create_app", "main"]

if __name__ == "__main__":
    main()
