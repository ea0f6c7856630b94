"""Test hooks: injected HTTP failures, malicious listings, and a record of served downloads."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/storage/v1"


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int


class Faults:
    """Test hooks, set in-process by tests. All thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._failures: list[_Failure] = []
            self._injected: dict[str, list[str]] = {}
            self.download_count = 0
            self.downloads: list[str] = []

    def fail_next(self, method: str, path_regex: str, status: int = 503, times: int = 1) -> None:
        """The next `times` requests whose method matches and whose URL path (after /storage/v1)
        matches re.search(path_regex) get a bare HTTP `status` response instead of being served."""
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, times))

    def pending(self) -> list[str]:
        """Injected failures not served yet, so a test can show its faults were really hit."""
        with self._lock:
            return [f"{f.method} {f.pattern.pattern} ×{f.times}" for f in self._failures]

    def inject_listing(self, bucket: str, names: list[str]) -> None:
        """list-v2 (and v1) responses for `bucket` also contain objects with these raw names
        (e.g. '../evil.txt'), as a malicious or broken server would; downloading them gives b'evil'."""
        with self._lock:
            self._injected.setdefault(bucket, []).extend(names)

    # ---- used by the server
    def take_failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for failure in self._failures:
                if failure.method in (method, "*") and failure.pattern.search(path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure.status
        return None

    def injected(self, bucket: str) -> list[str]:
        with self._lock:
            return list(self._injected.get(bucket, ()))

    def record_download(self, bucket: str, name: str) -> None:
        with self._lock:
            self.download_count += 1
            self.downloads.append(f"{bucket}/{name}")


class FaultMiddleware:
    """Answers a request with an injected failure before any route sees it."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(API_PREFIX):
            status = self.faults.take_failure(scope["method"], path[len(API_PREFIX):])
            if status is not None:
                body = {"statusCode": str(status), "error": "injected_fault", "message": f"injected HTTP {status}"}
                await JSONResponse(body, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
