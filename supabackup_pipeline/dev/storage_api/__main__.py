"""`python -m supabackup_pipeline.dev.storage_api --db-url URL --data-dir DIR --port N --jwt-secret S`."""

from supabackup_pipeline.dev.storage_api.server import main

main()
