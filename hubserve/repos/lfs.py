"""Git LFS objects uploaded ahead of the commit that takes them (``hubserve.repos.commits``).

The LFS batch API issues one upload URL per object the store does not hold. The URL carries no
token: its single-use ticket, recorded on the store's file system (so any ingress replica may
take the upload), names the repo, object and size it admits, and the body is checked against
both. What a token has in flight (objects announced within a ticket's life, or uploaded and not
yet committed) is bounded per token (``limits.max_lfs_objects_in_flight``,
``limits.max_lfs_bytes_in_flight``), and an uploaded object no commit takes is removed after
``limits.lfs_unclaimed_ttl_s``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Iterable

import orjson

from hubserve.config.limits import LimitsConfig
from hubserve.errors import EntryNotFound, InvalidInput, PayloadTooLarge
from .uploads import staging_dir

_OID = re.compile(r"[0-9a-f]{64}")


def check_oid(oid: object) -> str:
    if not isinstance(oid, str) or not _OID.fullmatch(oid):
        raise InvalidInput(f"Invalid LFS object id {oid!r}: a sha256 in 64 lowercase hex digits")
    return oid


class LfsObjects:
    """Uploaded LFS objects waiting for their commit, in the store's staging folder.

    Args:
        store: the model store folder (objects live on its file system, so a commit links them).
        limits: the quotas of a token and the age of an unclaimed object.
    """

    def __init__(self, store: Path, limits: LimitsConfig) -> None:
        self.root = staging_dir(store) / "lfs"
        self.objects = self.root / "objects"
        self.tickets = self.root / "tickets"
        self.holders = self.root / "holders"
        self.limits = limits

    def path(self, oid: str) -> Path:
        return self.objects / check_oid(oid)

    def has(self, oid: str, size: int) -> bool:
        path = self.path(oid)
        return path.is_file() and path.stat().st_size == size

    def issue(self, holder: str, model_id: str, wanted: list[tuple[str, int]]) -> dict[str, str]:
        """A ticket for each ``(oid, size)`` in ``wanted`` that the store does not hold yet, all
        counted against ``holder``'s quota (an object it has in flight already counts once).

        Returns:
            oid to ticket.

        Raises:
            PayloadTooLarge: the objects would take the holder past a quota; nothing is issued.
        """
        folder = self.holders / hashlib.sha256(holder.encode()).hexdigest()[:32]
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = self._in_flight(folder)
            fresh = {oid: size for oid, size in wanted if not self.has(oid, size)}
            held.update(fresh)
            count, size = len(held), sum(held.values())
            if count > self.limits.max_lfs_objects_in_flight or size > self.limits.max_lfs_bytes_in_flight:
                message = (f"This token would have {count} LFS objects ({size} bytes) uploaded but not committed; "
                           f"the limits are {self.limits.max_lfs_objects_in_flight} objects "
                           f"(limits.max_lfs_objects_in_flight) and {self.limits.max_lfs_bytes_in_flight} bytes "
                           "(limits.max_lfs_bytes_in_flight): commit what was uploaded first")
                raise PayloadTooLarge(message, extra={"message": message})
            for oid, size in fresh.items():
                (folder / check_oid(oid)).write_text(str(size))
        return {oid: self._ticket(model_id, oid, size) for oid, size in fresh.items()}

    def _in_flight(self, folder: Path) -> dict[str, int]:
        """oid to size of a holder's objects: uploaded and not committed, or announced within a
        ticket's life."""
        now, held = time.time(), {}
        for entry in folder.iterdir():
            if not _OID.fullmatch(entry.name):
                continue
            try:
                announced, size = entry.stat().st_mtime, int(entry.read_text())
            except (OSError, ValueError):
                continue
            if now - announced < self.limits.lfs_ticket_ttl_s or (self.objects / entry.name).is_file():
                held[entry.name] = size
        return held

    def _ticket(self, model_id: str, oid: str, size: int) -> str:
        """A single-use ticket admitting one upload of ``oid`` (``size`` bytes) to ``model_id``."""
        self.tickets.mkdir(parents=True, exist_ok=True)
        ticket = secrets.token_urlsafe(32)
        record = {"model_id": model_id, "oid": check_oid(oid), "size": size,
                  "expires": time.time() + self.limits.lfs_ticket_ttl_s}
        (self.tickets / ticket).write_bytes(orjson.dumps(record))
        return ticket

    def take(self, ticket: str) -> dict:
        """The record of a valid ticket, removed so that it serves once (404 otherwise)."""
        missing = EntryNotFound("This upload URL is unknown or expired")
        if not re.fullmatch(r"[A-Za-z0-9_-]{40,64}", ticket or ""):
            raise missing
        path = self.tickets / ticket
        claimed = path.with_name(f"{ticket}.{uuid.uuid4().hex}.taken")
        try:
            os.rename(path, claimed)
        except OSError:
            raise missing from None
        try:
            record = orjson.loads(claimed.read_bytes())
        finally:
            claimed.unlink(missing_ok=True)
        if record.get("expires", 0) < time.time():
            raise missing
        return record

    def receiver(self, record: dict) -> "LfsReceiver":
        """Where the body of the upload ``record`` (from ``take``) is written."""
        return LfsReceiver(self, record)

    def drop(self, oids: Iterable[str]) -> None:
        """Removes objects a commit took, and takes them off every holder's count."""
        oids = set(oids)
        holders = list(self.holders.iterdir()) if self.holders.is_dir() else []
        for oid in oids:
            self.path(oid).unlink(missing_ok=True)
            for folder in holders:
                (folder / oid).unlink(missing_ok=True)

    def sweep(self) -> None:
        """Removes objects no commit took, and records, older than ``limits.lfs_unclaimed_ttl_s``."""
        now, max_age = time.time(), self.limits.lfs_unclaimed_ttl_s
        folders = [self.objects, self.tickets]
        if self.holders.is_dir():
            folders += [folder for folder in self.holders.iterdir() if folder.is_dir()]
        for folder in folders:
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                try:
                    if path.name != ".lock" and now - path.stat().st_mtime > max_age:
                        path.unlink()
                except OSError:
                    continue


class LfsReceiver:
    """One LFS upload: kept only if it is exactly the object its ticket names.

    ``write`` each chunk, then ``finish``; ``close`` (always) removes what was not kept.
    """

    def __init__(self, objects: LfsObjects, record: dict) -> None:
        objects.objects.mkdir(parents=True, exist_ok=True)
        self.objects = objects
        self.record = record
        self.part = objects.objects / f"{uuid.uuid4().hex}.part"
        self.fh = open(self.part, "xb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Raises PayloadTooLarge past the announced size."""
        self.size += len(chunk)
        if self.size > self.record["size"]:
            raise PayloadTooLarge(f"The upload is larger than the {self.record['size']} bytes announced")
        self.digest.update(chunk)
        self.fh.write(chunk)

    def finish(self) -> None:
        """Raises InvalidInput for fewer bytes than announced, or another sha256."""
        self.fh.close()
        if self.size != self.record["size"]:
            raise InvalidInput(f"The upload has {self.size} bytes; {self.record['size']} were announced")
        if self.digest.hexdigest() != self.record["oid"]:
            raise InvalidInput("The upload's sha256 is not the object id announced")
        os.replace(self.part, self.objects.path(self.record["oid"]))

    def close(self) -> None:
        self.fh.close()
        self.part.unlink(missing_ok=True)
