"""Dagster resources: the project to back up, and where backups are kept.

All configuration comes from environment variables (a `.env` file works with `dagster dev`):
SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_DB_URL, BACKUP_PATH, TEMP_PATH. Secrets are
bound with `EnvVar`, so the UI shows the variable's name, never its value. Definitions load
without any of them; a run that needs a missing or malformed one fails naming the variable.
"""

from supabackup_pipeline.resources.backup_storage import BackupStorage
from supabackup_pipeline.resources.supabase import SupabaseDatabase, SupabaseStorage

__all__ = ["BackupStorage", "SupabaseDatabase", "SupabaseStorage"]
