"""Integrated files: records (who owns which file) over the content-addressed blob store.

A file record belongs to one device of one organization and names its blob by SHA-256.
Records are store objects of kind ``file`` (key: file id, scope: ``{orgId}/{assetId}``,
so a device's files list in key order); they are also cached in memory, which gives the
blob reference counts: a blob is deleted when its last record goes. Uploads in progress
hold their blob (``hold``/``release``) so that a concurrent delete of identical content
never removes a blob an upload is about to reference.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable

import msgspec

from ..errors import Conflict, NotFound
from ..store.base import Store, StreamRow
from ..store.blobs import BlobStore

log = logging.getLogger("headrace.files")

URI_PREFIX = "enos-connect://"
KIND = "file"
_SECRET_KIND = "hub_secret"
_SECRET_KEY = "file-url-signing"


class FileRecord(msgspec.Struct, kw_only=True):
    id: str
    orgId: str
    productKey: str
    deviceKey: str
    assetId: str
    originalFilename: str
    size: int
    md5: str
    sha256: str
    createTime: int
    contentType: str = ""

    @property
    def uri(self) -> str:
        return URI_PREFIX + self.id

    def info(self) -> dict[str, object]:
        """The B.3 ``getFileInfo`` shape."""
        return {
            "orgId": self.orgId,
            "fileUri": self.uri,
            "originalFilename": self.originalFilename,
            "fileSize": self.size,
            "md5": self.md5,
            "createTime": self.createTime,
        }


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(FileRecord)


def new_file_id() -> str:
    return uuid.uuid4().hex


def file_id_of(uri: str) -> str | None:
    """The id in ``enos-connect://{id}`` (None when ``uri`` is not one)."""
    if not uri.startswith(URI_PREFIX):
        return None
    fid = uri[len(URI_PREFIX) :]
    return fid if fid and len(fid) <= 64 and fid.isalnum() else None


def scope_of(org_id: str, asset_id: str) -> str:
    return f"{org_id}/{asset_id}"


class Files:
    def __init__(self, store: Store, blobs: BlobStore):
        self.store = store
        self.blobs = blobs
        self.records: dict[str, FileRecord] = {}
        self._refs: Counter[str] = Counter()
        self._held: Counter[str] = Counter()
        self._url_key: bytes | None = None
        self._key_lock = asyncio.Lock()
        # the outbound stream's records of files stored (True) or deleted, written with
        # the file records; connected in app.py
        self.outbound: list[Callable[[bool, list[FileRecord]], list[StreamRow]]] = []

    def load(self) -> None:
        """Load the records, clear interrupted uploads, and drop blobs no record names."""
        self.blobs.open()
        for doc in self.store.load_objects(KIND):
            rec = _dec.decode(doc)
            self.records[rec.id] = rec
            self._refs[rec.sha256] += 1
        orphans = [sha for sha in self.blobs.scan() if sha not in self._refs]
        for sha in orphans:
            self.blobs.delete(sha)
        if orphans:
            log.info("removed unreferenced blobs", extra={"blobs": len(orphans)})
        for doc in self.store.load_objects(_SECRET_KIND):
            d = msgspec.json.decode(doc)
            if d.get("name") == _SECRET_KEY:
                self._url_key = base64.b64decode(d["key"])

    # -- records ---------------------------------------------------------------------

    def get(self, org_id: str, file_id: str) -> FileRecord:
        rec = self.records.get(file_id)
        if rec is None or rec.orgId != org_id:
            raise NotFound(f"file {URI_PREFIX}{file_id} not found")
        return rec

    def hold(self, sha256: str) -> None:
        self._held[sha256] += 1

    def release(self, sha256: str) -> None:
        self._held[sha256] -= 1
        if self._held[sha256] <= 0:
            del self._held[sha256]
            self._collect(sha256)

    async def add(self, records: list[FileRecord]) -> None:
        """Store new records in one transaction (their blobs must be committed)."""
        if not records:
            return
        await self.store.insert_objects(
            [(KIND, r.id, scope_of(r.orgId, r.assetId), _enc.encode(r)) for r in records],
            stream=[row for fn in self.outbound for row in fn(True, records)],
        )
        for r in records:
            self.records[r.id] = r
            self._refs[r.sha256] += 1

    async def delete(self, rec: FileRecord) -> None:
        """Delete a record; its blob goes too when nothing else refers to it."""
        await self.store.delete_object(
            KIND, rec.id, stream=[row for fn in self.outbound for row in fn(False, [rec])]
        )
        if self.records.pop(rec.id, None) is None:
            return
        self._refs[rec.sha256] -= 1
        if self._refs[rec.sha256] <= 0:
            del self._refs[rec.sha256]
            self._collect(rec.sha256)

    async def delete_many(self, recs: list[FileRecord]) -> None:
        for rec in recs:
            await self.delete(rec)

    def _collect(self, sha256: str) -> None:
        # no await between the check and the unlink: the event loop makes this atomic
        if self._refs.get(sha256, 0) <= 0 and self._held.get(sha256, 0) <= 0:
            self.blobs.delete(sha256)

    async def list_device(
        self, org_id: str, asset_id: str, after: str, limit: int
    ) -> list[FileRecord]:
        docs = await self.store.list_objects(KIND, scope_of(org_id, asset_id), after, limit)
        return [_dec.decode(d) for d in docs]

    # -- signed download URLs --------------------------------------------------------

    async def _key(self) -> bytes:
        if self._url_key is not None:
            return self._url_key
        async with self._key_lock:
            if self._url_key is None:
                key = secrets.token_bytes(32)
                doc = _enc.encode({"name": _SECRET_KEY, "key": base64.b64encode(key).decode()})
                try:
                    await self.store.insert_objects([(_SECRET_KIND, _SECRET_KEY, "", doc)])
                    self._url_key = key
                except Conflict:  # another node made it first
                    for d in await self.store.list_objects(_SECRET_KIND, "", "", 100):
                        v = msgspec.json.decode(d)
                        if v.get("name") == _SECRET_KEY:
                            self._url_key = base64.b64decode(v["key"])
            assert self._url_key is not None
            return self._url_key

    @staticmethod
    def _sign(key: bytes, org_id: str, file_id: str, expires: int) -> str:
        mac = hmac.new(key, f"{org_id}\n{file_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    async def sign(self, org_id: str, file_id: str, ttl: int) -> tuple[int, str]:
        """(expires as epoch seconds, signature) for a download URL."""
        expires = int(time.time()) + ttl
        return expires, self._sign(await self._key(), org_id, file_id, expires)

    async def verify(self, org_id: str, file_id: str, expires: int, signature: str) -> bool:
        good = self._sign(await self._key(), org_id, file_id, expires)
        return hmac.compare_digest(good.encode(), signature.encode())
