"""Errors shaped like storage-api's: HTTP 400, with the "real" status as a string in the body.

storage3 raises `StorageApiError(message, error, statusCode)` from exactly these three keys.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class StorageError(Exception):
    def __init__(self, status: int, error: str, message: str, http_status: int = 400):
        super().__init__(message)
        self.status, self.error, self.message, self.http_status = status, error, message, http_status

    def response(self) -> JSONResponse:
        body = {"statusCode": str(self.status), "error": self.error, "message": self.message}
        return JSONResponse(body, status_code=self.http_status)


def object_not_found() -> StorageError:
    return StorageError(404, "not_found", "Object not found")


def bucket_not_found() -> StorageError:
    return StorageError(404, "Bucket not found", "Bucket not found")


def duplicate() -> StorageError:
    return StorageError(409, "Duplicate", "The resource already exists")


def bucket_not_empty() -> StorageError:
    return StorageError(409, "Bucket not empty", "The bucket you tried to delete is not empty")


def invalid_key(key: str) -> StorageError:
    return StorageError(400, "InvalidKey", f"Invalid key: {key}")


def invalid_mime_type(mime: str) -> StorageError:
    return StorageError(415, "invalid_mime_type", f"mime type {mime} is not supported")


def too_large() -> StorageError:
    return StorageError(413, "Payload too large", "The object exceeded the maximum allowed size")


def unauthorized(message: str) -> StorageError:
    return StorageError(403, "Unauthorized", message)


def bad_request(message: str) -> StorageError:
    return StorageError(400, "Error", message)
