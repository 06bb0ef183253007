"""Watching the SQLite write-ahead log and shared-memory files under a running store.

A commit is durable only once its frames are in the `-wal` file on disk. If that file (or the
`-shm` index that tells every connection where the log ends) is unlinked or replaced while the
store runs, SQLite keeps writing into the orphaned inode: commits still succeed, and a crash
then loses them. The store holds a descriptor on each file, checks them around every write
transaction (an fstat: cheap), and on a fault moves what the orphaned log holds into the main
file (a checkpoint) and reopens every connection, which starts a fresh, linked log.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

SUFFIXES = ("-wal", "-shm")


class CompanionFiles:
    """Descriptors on `<db>-wal` and `<db>-shm`, opened while the writer connection is."""

    def __init__(self, db_path: Path) -> None:
        self.paths = [Path(f"{db_path}{suffix}") for suffix in SUFFIXES]
        self._held: list[tuple[int, tuple[int, int], Path]] = []

    def attach(self) -> None:
        """Hold the files SQLite has just opened (after the writer's first transaction)."""
        self.detach()
        for path in self.paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # not created yet (another journal mode); nothing to watch
            st = os.fstat(fd)
            self._held.append((fd, (st.st_dev, st.st_ino), path))

    def detach(self) -> None:
        for fd, _, _ in self._held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held = []

    def fault(self, *, full: bool) -> str | None:
        """What went wrong with the held files, or None. `full` also re-resolves each path
        (a stat of the directory entry), which catches a file replaced by a hard link."""
        for fd, identity, path in self._held:
            name = path.name.rsplit("-", 1)[-1]
            if os.fstat(fd).st_nlink == 0:
                return f"the SQLite {name} file was deleted"
            if full:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    return f"the SQLite {name} file is missing"
                if (st.st_dev, st.st_ino) != identity:
                    return f"the SQLite {name} file was replaced"
        return None
