"""Errors a user can act on. Each message names the problem (and the variable or ID involved)."""


class SupabackupError(Exception):
    """Base of every error supabackup raises on purpose; the CLI prints its message as is."""

    exit_code = 1


class ConfigError(SupabackupError):
    """A missing or malformed setting; the message names the environment variable."""

    exit_code = 2


class DatabaseUnavailable(SupabackupError):
    """The project's database cannot be reached or refused the connection."""


class DiskFull(SupabackupError):
    """The disk that holds the backups (or their scratch space) ran out of space or quota."""


class BackupNotFound(SupabackupError):
    exit_code = 2


class UnsafeName(SupabackupError):
    """A name from the server would write outside the backup folder."""


class UsageError(SupabackupError):
    """The command was called wrongly (e.g. a rollback without confirmation and no terminal)."""

    exit_code = 2


class Refused(SupabackupError):
    """The operation was refused as asked (e.g. deleting the only valid backup); nothing was changed."""

    exit_code = 2


class BackupExists(Refused):
    """A backup run for an ID that is already published: a backup is never overwritten."""


class RunRefused(Refused):
    """A step of a backup run that an earlier step refused: it does nothing either."""


class RestoreRefused(Refused):
    """The restore cannot be done safely as asked; nothing was touched."""


REFUSAL_CLASSES = {"Refused", "BackupExists", "RunRefused", "RollbackRefused", "RestoreRefused", "SchemaRestoreRefused", "InvalidBackupId",
                   "BackupNotFound", "UsageError"}
