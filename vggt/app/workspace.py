"""The app's files: one temporary root per server, one folder per reconstruction, removed when no longer needed.

Every request writes only below the root (Gradio's upload and output cache too: `gradio_cache`), so the user's
disk keeps nothing after the server stops. A session's folders go when its browser tab closes or it starts a new
reconstruction; the whole root goes at exit (`close`, also run by atexit for exits that skip the caller's finally).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

ROOT_PREFIX = "vggt-app-"
GRADIO_CACHE = "gradio_cache"  # GRADIO_TEMP_DIR: uploads and the files the page is sent


class Workspace:
    """A temporary root (`parent`: where to create it, default the system's temp folder) and its request folders."""

    def __init__(self, parent: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent)).resolve()  # owns() compares resolved
        self.gradio_cache = self.root / GRADIO_CACHE
        self.gradio_cache.mkdir()
        self._requests: dict[str, list[Path]] = {}  # session id -> its folders, oldest first
        self._count = 0
        self._lock = threading.Lock()  # requests and session ends arrive on Gradio's worker threads
        atexit.register(self.close)

    def new_request(self, session: str) -> Path:
        """A fresh, empty folder for one reconstruction of `session`; that session's earlier folders are removed."""
        with self._lock:
            self._count += 1
            folder = self.root / f"request_{self._count:05d}"
            folder.mkdir()
            earlier = self._requests.get(session, [])
            self._requests[session] = [folder]
        for old in earlier:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def end_session(self, session: str) -> None:
        """Remove the folders of a session whose page was closed."""
        with self._lock:
            folders = self._requests.pop(session, [])
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def owns(self, path: Path) -> bool:
        """Whether `path` lies inside a live request folder (a re-render may only read those)."""
        resolved = Path(path).resolve()
        with self._lock:
            live = [folder for folders in self._requests.values() for folder in folders]
        return any(resolved == folder or folder in resolved.parents for folder in live)

    def close(self) -> None:
        """Remove the whole root (idempotent)."""
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self._requests.clear()
