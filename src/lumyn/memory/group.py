"""The memory items of one tenant and action type: segments in seq order, kept on disk.

Items arrive from the store in seq order (`apply`). Each batch becomes a segment; small
neighbours merge (the newest two, while the older is under MERGE_SMALL items or under 8 times
the newer, up to MERGE_CAP items), so a group is a few large segments and a few small ones.

On disk (`directory`, optional): one sub-directory per segment, one .npy file per array
(memory-mapped when loaded), and `manifest.json` naming the segments, the seq they run up to
and the items later labels superseded. A segment is written to a temporary directory, synced,
then renamed; the manifest is replaced atomically after its segments are on disk. A crash at
any point leaves the previous manifest and its segments intact, and whatever the manifest does
not cover is read again from the store. Writers (processes sharing a store) serialise on
`lock`; a manifest that does not load is ignored (the group is rebuilt from the store).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import orjson

from lumyn.memory.index import MemoryIndex, Similarity
from lumyn.memory.item import MemoryItem
from lumyn.memory.search import search
from lumyn.memory.segment import FIELDS, Columns, Segment, token_key

FORMAT = 1
MERGE_SMALL = 1024
MERGE_CAP = 262_144
PERSIST_MIN = 1024  # smaller segments are read from the store again at start-up
SMALL_MAX = 2048  # a group this small is answered by the plain in-memory MemoryIndex (faster)


class GroupIndex:
    def __init__(self, tenant_id: str, action_type: str, directory: Path | None = None,
                 key: Callable[[str], int] = token_key) -> None:
        self.tenant_id, self.action_type = tenant_id, action_type
        self.directory = directory
        self.key = key
        self.segments: list[Segment] = []
        self.names: list[str | None] = []  # on-disk name of each segment, None if not written
        self.last_seq = 0
        self.superseded: list[tuple[int, int]] = []  # (seq of the newer item, seq it retired)
        self.live = 0
        self.total = 0  # items in the segments, superseded ones included
        self._small: tuple[MemoryIndex, str | None, str | None] | None = None

    # -- items --------------------------------------------------------------------------------

    def apply(self, rows: Sequence[tuple[int, MemoryItem]]) -> None:
        """Add items newer than `last_seq` (ascending seq), retiring the ones they supersede."""
        self.apply_batches([rows])

    def apply_batches(self, batches: Iterable[Sequence[tuple[int, MemoryItem]]]) -> None:
        """`apply` for batches read one after another (a long catch-up): one segment for all,
        holding only their columns, not the items, in memory."""
        parts: list[Columns] = []
        superseded: list[tuple[int, int]] = []
        added: list[MemoryItem] = []  # kept while the group is small (see _small_index)
        after = self.last_seq
        for batch in batches:
            rows = [r for r in batch if r[0] > after]
            if not rows:
                continue
            after = rows[-1][0]
            parts.append(Columns.from_items(rows, self.key))
            superseded += [(seq, item.supersedes_seq) for seq, item in rows
                           if item.supersedes_seq is not None]
            if self._small is not None and self.total + len(added) + len(rows) <= SMALL_MAX:
                added += [item for _, item in rows]
        if not parts:
            return
        small = self._small
        self._append(Segment.build(parts[0] if len(parts) == 1 else Columns.concat(parts)))
        if small is not None and self.total <= SMALL_MAX:  # extend it rather than rebuild it
            index, cutoff, oldest = small
            for item in added:
                if cutoff is None or (item.created_at or "") >= cutoff:
                    index.add(item)
                    oldest = min(oldest or "\uffff", item.created_at or "")
            self._small = (index, cutoff, oldest)
        for newer, older in superseded:
            self.superseded.append((newer, older))
            self._retire(older)
        self._merge()
        if self.directory is not None:
            self._persist()

    def _append(self, seg: Segment, name: str | None = None) -> None:
        self.segments.append(seg)
        self.names.append(name)
        self.last_seq = seg.last_seq
        self.live += seg.n
        self.total += seg.n
        self._small = None

    def _retire(self, seq: int) -> None:
        at = bisect_right([s.first_seq for s in self.segments], seq) - 1
        if at < 0:
            return
        seg = self.segments[at]
        position = seg.position_of_seq(seq)
        if position is not None and not seg.dead[position]:
            seg.retire(position)
            self.live -= 1
            if self._small is not None:
                memory_id = bytes(seg.a["ids"][position]).decode()
                self._small[0].retire(self.tenant_id, self.action_type, memory_id)

    def _merge(self) -> None:
        segs = self.segments
        while len(segs) >= 2 and (segs[-2].n < MERGE_SMALL or segs[-2].n < 8 * segs[-1].n) \
                and segs[-2].n + segs[-1].n <= MERGE_CAP:
            older, newer = segs[-2], segs[-1]
            merged = Segment.build(Columns.concat([older.columns(), newer.columns()]))
            merged.dead[: older.n] = older.dead
            merged.dead[older.n:] = newer.dead
            merged.dead_count = older.dead_count + newer.dead_count
            segs[-2:] = [merged]
            self.names[-2:] = [None]

    def query(self, features: tuple[str, ...], k: int, cutoff: str | None = None) -> Similarity:
        if self.total <= SMALL_MAX:
            return self._small_index(cutoff).query(self.tenant_id, self.action_type, features, k)
        return search(self.segments, self.tenant_id, self.action_type, features, k, cutoff,
                      self.key)

    def _small_index(self, cutoff: str | None) -> MemoryIndex:
        """The live items inside the cutoff, in a MemoryIndex kept until an item is added or
        retired, or the cutoff passes the oldest item it holds."""
        small = self._small
        if small is not None and small[1] == cutoff:
            return small[0]
        if small is not None and (small[1] or "") <= (cutoff or "") \
                and (small[2] is None or (cutoff or "") <= small[2]):
            return small[0]  # the cutoff moved, past no item
        items = [seg.item(self.tenant_id, self.action_type, p)
                 for seg in self.segments for p in np.flatnonzero(~seg.dead).tolist()]
        kept = [i for i in items if cutoff is None or (i.created_at or "") >= cutoff]
        oldest = min((i.created_at or "" for i in kept), default=None)
        self._small = (MemoryIndex(kept), cutoff, oldest)
        return self._small[0]

    def last_item_id(self) -> str | None:
        """The memory_id at `last_seq` of what was loaded from disk (checked against the store)."""
        if not self.segments:
            return None
        return bytes(self.segments[-1].a["ids"][-1]).decode()

    # -- disk -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Path]:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self.directory
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _persist(self) -> None:
        """Write the segments that extend the on-disk prefix, then the manifest."""
        with self._locked() as root:
            count, wrote = 0, False
            for i, seg in enumerate(self.segments):
                name = self.names[i]
                if name is None or not (root / name).is_dir():  # absent: write it (again)
                    if seg.n < PERSIST_MIN:
                        break
                    name = self.names[i] = _write_segment(root, seg)
                    wrote = True
                count = i + 1
            if not wrote or count == 0:
                return
            names = [n for n in self.names[:count] if n is not None]
            covered = self.segments[count - 1].last_seq
            manifest = {
                "format": FORMAT, "tenant_id": self.tenant_id, "action_type": self.action_type,
                "segments": names, "last_seq": covered,
                "superseded": [[a, b] for a, b in self.superseded if a <= covered],
            }
            _write_atomically(root / "manifest.json", orjson.dumps(manifest))
            for entry in root.iterdir():  # segments no manifest names any more, crash debris
                if entry.is_dir() and entry.name not in names:
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.name.startswith("manifest.json.tmp-"):
                    entry.unlink(missing_ok=True)

    def load(self) -> bool:
        """Open the segments the manifest names (memory-mapped). False (and nothing loaded)
        when there is none or it does not hold together."""
        if self.directory is None:
            return False
        try:
            manifest = orjson.loads((self.directory / "manifest.json").read_bytes())
            if manifest.get("format") != FORMAT or manifest["tenant_id"] != self.tenant_id \
                    or manifest["action_type"] != self.action_type:
                return False
            segments = [_read_segment(self.directory / name) for name in manifest["segments"]]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        previous = 0
        for seg in segments:
            if seg.n == 0 or seg.first_seq <= previous:
                return False
            previous = seg.last_seq
        if previous != manifest["last_seq"]:
            return False
        for seg, name in zip(segments, manifest["segments"], strict=True):
            self._append(seg, name)
        for newer, older in manifest["superseded"]:
            self.superseded.append((int(newer), int(older)))
            self._retire(int(older))
        return True

    def reset(self) -> None:
        self.segments, self.names, self.superseded = [], [], []
        self.last_seq = self.live = self.total = 0
        self._small = None


def _write_segment(root: Path, seg: Segment) -> str:
    name = f"seg-{seg.first_seq}-{seg.last_seq}-{uuid.uuid4().hex[:8]}"
    tmp = root / f"tmp-{name}"
    tmp.mkdir()
    for field in FIELDS:
        with open(tmp / f"{field}.npy", "wb") as handle:
            np.save(handle, np.asarray(seg.a[field]), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
    _fsync_dir(tmp)
    os.rename(tmp, root / name)
    _fsync_dir(root)
    return name


def _read_segment(path: Path) -> Segment:
    arrays = {f: np.load(path / f"{f}.npy", mmap_mode="r", allow_pickle=False) for f in FIELDS}
    n = len(arrays["seq"])
    for field in ("ids", "w2", "label", "created", "mask", "item_cls", "cls_items"):
        if len(arrays[field]) != n:
            raise ValueError(f"{path.name}: {field} has {len(arrays[field])} rows, not {n}")
    for field, rows in (("tok_off", n + 1), ("pay_off", n + 1),
                        ("cls_off", len(arrays["cls_w2"]) * 3 + 1),
                        ("sp_off", len(arrays["sp_keys"]) + 1)):
        if len(arrays[field]) != rows:
            raise ValueError(f"{path.name}: {field} has {len(arrays[field])} rows, not {rows}")
    return Segment(arrays)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
