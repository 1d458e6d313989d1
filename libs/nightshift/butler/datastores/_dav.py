"""The WebDAV storage backend of :class:`FileDatastore` (httpx; DMS-MWBT-REQ-0028, 0029, 0038).

Rubin's Science Platform gives users their files over WebDAV (and POSIX
mounts), not VOSpace; ``lsst-resources`` reads WebDAV with HTTP byte ranges and
tests against a real ``wsgidav`` server. This backend does the same:

* ``dav://host[:port]/path`` is plain HTTP, ``davs://`` is HTTPS (the
  ``lsst-resources`` convention); ``http(s)://`` URLs are accepted as is.
* A bearer token comes from the environment (``DAV_TOKEN``) as a
  :class:`~pydantic.SecretStr`; it is sent in the ``Authorization`` header
  only and never appears in a message, a ``repr`` or a log line.
* Writes are atomic for readers: a file is PUT under ``_staging/`` then
  MOVEd into place (a rename on the server). Missing collections are made
  with MKCOL on demand.
* :meth:`DavBackend.open_ranged` returns a seekable file object that reads
  with ``Range`` requests, so a cutout of a FITS image transfers the bytes of
  its pixels and headers, not the file (see :attr:`DavBackend.stats`).
* Errors name the URL and the HTTP status: 401/403 are
  :class:`DatastorePermissionError`, 404 :class:`DatasetNotFoundError`,
  connection failures and 5xx after retries :class:`StorageUnavailableError`
  (``retriable``).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._exceptions import (
    DatasetCorruptError,
    DatasetNotFoundError,
    DatastoreError,
    DatastorePermissionError,
    StorageUnavailableError,
)

__all__ = ["DavBackend", "DavRangeFile", "DavSettings", "DavStats"]

STAGING = "_staging"
_DAV_NS = "{DAV:}"
_IDEMPOTENT = {"GET", "HEAD", "PUT", "DELETE", "MKCOL", "MOVE", "PROPFIND", "OPTIONS"}


class DavSettings(BaseSettings):
    """WebDAV client settings from the environment (``DAV_ENDPOINT``, ``DAV_TOKEN``).

    Attributes
    ----------
    endpoint : str or None
        Default server URL for ``dav`` datastores configured without one.
    token : SecretStr or None
        Bearer token; None sends no ``Authorization`` header.
    """

    model_config = SettingsConfigDict(env_prefix="DAV_", frozen=True, extra="ignore")

    endpoint: str | None = None
    token: SecretStr | None = None


@dataclass
class DavStats:
    """What the backend has transferred: requests made and body bytes received."""

    requests: int = 0
    bytes_received: int = 0


def http_url(url: str) -> str:
    """``dav://`` → ``http://``, ``davs://`` → ``https://``; HTTP(S) URLs unchanged.

    Raises
    ------
    DatastoreError
        Another scheme.
    """
    scheme, sep, rest = url.partition("://")
    mapped = {"dav": "http", "davs": "https", "http": "http", "https": "https"}.get(scheme.lower())
    if not sep or mapped is None:
        raise DatastoreError(f"{url!r} is not a WebDAV URL: use dav://host/path or davs://host/path")
    return f"{mapped}://{rest}"


class DavBackend:
    """Files under a WebDAV collection.

    Parameters
    ----------
    url : str
        Root collection: ``dav://host:port/path`` (HTTP), ``davs://...``
        (HTTPS) or an ``http(s)://`` URL. Relocation is a new root URL.
    token : str or SecretStr, optional
        Bearer token; default ``$DAV_TOKEN``.
    max_attempts : int
        Attempts per request on connection errors and 5xx answers (with backoff).
    timeout : float
        Seconds for connecting and for each read.
    readahead : int
        Minimum bytes fetched by a sequential ranged read (header scans read
        2880-byte blocks one at a time; a small read-ahead saves round trips).
    verify : bool or str
        TLS verification for ``davs://`` (a CA bundle path, or False).
    """

    remote = True

    def __init__(
        self,
        url: str,
        token: str | SecretStr | None = None,
        max_attempts: int = 4,
        timeout: float = 30.0,
        readahead: int = 8192,
        verify: bool | str = True,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if readahead < 0:
            raise ValueError("readahead must be >= 0")
        self.root_url = url.rstrip("/")
        self.base = http_url(self.root_url) + "/"
        parts = urlsplit(self.base)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = unquote(parts.path)  # hrefs of a listing are compared decoded
        if isinstance(token, str):
            token = SecretStr(token)
        self._token = token if token is not None else DavSettings().token
        self.max_attempts = max_attempts
        self.readahead = readahead
        self.stats = DavStats()
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"} if self._token else {}
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), verify=verify,
                                   follow_redirects=False, event_hooks={"response": [self._count]})
        weakref.finalize(self, self.client.close)
        self._staging = Path(tempfile.mkdtemp(prefix="nightshift-dav-staging-"))
        weakref.finalize(self, shutil.rmtree, self._staging, True)
        self._collections: set[str] = set()

    def __repr__(self) -> str:
        return f"DavBackend({self.root_url})"  # never the token

    def close(self) -> None:
        """Close the HTTP connection pool (idempotent)."""
        self.client.close()

    # -- HTTP ------------------------------------------------------------------------------------
    def _count(self, response: httpx.Response) -> None:
        self.stats.requests += 1

    def url(self, rel: str) -> str:
        """HTTP URL of ``rel`` (path segments percent-encoded)."""
        return self.base + quote(rel.lstrip("/"), safe="/")

    def uri(self, rel: str) -> str:
        """``dav://`` (or ``davs://``) URI of ``rel``, as configured."""
        return f"{self.root_url}/{rel.lstrip('/')}"

    def _request(self, method: str, rel: str, what: str, *, ok: tuple[int, ...], headers: dict[str, str] | None = None,
                 content: Any = None, stream: bool = False, url: str | None = None) -> httpx.Response:
        """One request, retried on connection errors and 5xx; raises the datastore error for other statuses."""
        url = url or self.url(rel)
        delay = 0.2
        for attempt in range(1, self.max_attempts + 1):
            body = content() if callable(content) else content
            try:
                request = self.client.build_request(method, url, headers=headers, content=body)
                response = self.client.send(request, stream=stream)
            except httpx.TransportError as exc:
                if attempt == self.max_attempts or method not in _IDEMPOTENT:
                    raise StorageUnavailableError(
                        f"WebDAV {what} of {self.uri(rel)} failed after {attempt} attempt(s): cannot reach "
                        f"{self._origin} ({type(exc).__name__})"
                    ) from exc
            else:
                if response.status_code in ok:
                    return response
                if stream:
                    response.close()
                if response.status_code < 500 or attempt == self.max_attempts:
                    raise self._error(what, rel, response, attempt)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, what: str, rel: str, response: httpx.Response, attempts: int) -> DatastoreError:
        status = response.status_code
        where = f"WebDAV {what} of {self.uri(rel)}: HTTP {status} {response.reason_phrase}"
        exc: DatastoreError
        if status == 401:
            exc = DatastorePermissionError(f"{where}: not authenticated; set DAV_TOKEN to a valid bearer token")
        elif status == 403:
            exc = DatastorePermissionError(f"{where}: the token may not do this here")
        elif status == 404:
            exc = DatasetNotFoundError(f"{where}: not found")
        elif status >= 500:
            exc = StorageUnavailableError(f"{where} (after {attempts} attempt(s))")
        else:
            exc = DatastoreError(where)
        exc.http_status = status  # type: ignore[attr-defined]  # extra attribute for callers that branch on the status
        return exc

    def _mkcols(self, rel: str) -> None:
        """Make the collections above ``rel``, the root's included, not seen yet (405: already there)."""
        parts = [quote(p) for p in self._base_path.split("/") if p] + [quote(p) for p in rel.split("/")[:-1] if p]
        path = ""
        for part in parts:
            path = f"{path}/{part}"
            if path in self._collections:
                continue
            self._request("MKCOL", rel, "collection creation", ok=(201, 405, 301), url=f"{self._origin}{path}/")
            self._collections.add(path)

    def _put_file(self, local: Path, rel: str) -> None:
        def body() -> Iterator[bytes]:
            with open(local, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield chunk

        size = local.stat().st_size
        self._put(rel, body, size)

    def _put(self, rel: str, body: Any, size: int) -> None:
        headers = {"Content-Length": str(size)}
        try:
            self._request("PUT", rel, "upload", ok=(200, 201, 204), headers=headers, content=body)
        except DatastoreError as exc:
            if getattr(exc, "http_status", None) != 409:  # 409 Conflict: a parent collection is missing
                raise
            self._collections.clear()  # a collection vanished (deleted by someone else): re-make them
            self._mkcols(rel)
            self._request("PUT", rel, "upload", ok=(200, 201, 204), headers=headers, content=body)

    def _object(self, rel: str) -> str:
        if not rel or rel.endswith("/"):
            raise DatastoreError(f"refusing to write {self.uri(rel)!r}: a datastore path must name a file")
        return rel

    # -- StorageBackend operations -----------------------------------------------------------------
    def new_staging_path(self, rel: str) -> Path:
        """A local staging path for a file that will be uploaded as ``rel``."""
        return self._staging / f"{uuid.uuid4().hex}-{Path(rel).name}"

    def publish(self, staging: Path, rel: str) -> None:
        """Upload a staged file under ``_staging/`` then MOVE it into place (readers see all or nothing)."""
        self.upload(staging, rel)
        staging.unlink(missing_ok=True)

    def upload(self, local: Path, rel: str) -> None:
        """Upload a local file, keeping it (atomic on the server: PUT aside, then MOVE)."""
        rel = self._object(rel)
        tmp = f"{STAGING}/{uuid.uuid4().hex}"
        self._put_file(local, tmp)
        self._move_into_place(tmp, rel)

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write a small file (PUT aside, then MOVE)."""
        rel = self._object(rel)
        tmp = f"{STAGING}/{uuid.uuid4().hex}"
        self._put(tmp, data, len(data))
        self._move_into_place(tmp, rel)

    def _move_into_place(self, tmp: str, rel: str) -> None:
        """MOVE a staged file to ``rel``; on failure remove the staged copy and re-raise."""
        try:
            self.move(tmp, rel)
        except BaseException:
            with contextlib.suppress(DatastoreError):
                self.delete(tmp)
            raise

    def get_bytes(self, rel: str) -> bytes | None:
        """Content of a small file, None if absent."""
        try:
            response = self._request("GET", rel, "read", ok=(200,))
        except DatasetNotFoundError:
            return None
        self.stats.bytes_received += len(response.content)
        return response.content

    def download(self, rel: str, dest: Path) -> None:
        """Download ``rel`` to the local file ``dest`` (streamed)."""
        response = self._request("GET", rel, "download", ok=(200,), stream=True)
        try:
            with open(dest, "wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    f.write(chunk)
                    self.stats.bytes_received += len(chunk)
        except httpx.TransportError as exc:
            raise StorageUnavailableError(f"WebDAV download of {self.uri(rel)} was interrupted") from exc
        finally:
            response.close()

    def exists(self, rel: str) -> bool:
        """Whether the file exists."""
        return self.size(rel) is not None

    def size(self, rel: str) -> int | None:
        """File size from a HEAD request, None if absent."""
        try:
            response = self._request("HEAD", rel, "head", ok=(200,))
        except DatasetNotFoundError:
            return None
        return int(response.headers.get("Content-Length", "0"))

    def delete(self, rel: str) -> None:
        """Delete the file (absent is fine)."""
        with contextlib.suppress(DatasetNotFoundError):
            self._request("DELETE", rel, "delete", ok=(200, 204))

    def check_deletable(self, rel: str) -> None:
        """The server enforces permissions on the DELETE itself; nothing to check ahead."""

    def move(self, src: str, dst: str) -> None:
        """Server-side MOVE (a rename on a file-system server), replacing ``dst``."""
        dst = self._object(dst)
        headers = {"Destination": self.url(dst), "Overwrite": "T"}
        try:
            self._request("MOVE", src, f"move to {self.uri(dst)}", ok=(201, 204), headers=headers)
        except DatastoreError as exc:
            if getattr(exc, "http_status", None) != 409:  # 409 Conflict: a parent collection is missing
                raise
            self._collections.clear()
            self._mkcols(dst)
            self._request("MOVE", src, f"move to {self.uri(dst)}", ok=(201, 204), headers=headers)

    def list(self, prefix: str) -> Iterator[str]:
        """Relative paths of the files under ``prefix`` (``""``: the whole datastore), by PROPFIND Depth 1.

        The ``_staging`` collection of in-flight uploads is not part of the datastore.
        """
        start = prefix.strip("/")
        todo = [start + "/" if start else ""]
        while todo:
            collection = todo.pop()
            try:
                response = self._request("PROPFIND", collection, "listing", ok=(207,),
                                         headers={"Depth": "1", "Content-Type": "application/xml"},
                                         content=b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop>'
                                                 b"<resourcetype/></prop></propfind>")
            except DatasetNotFoundError:
                continue
            for rel, is_collection in self._parse_multistatus(response.content):
                if rel.rstrip("/") == collection.rstrip("/") or rel.startswith(STAGING):
                    continue
                if is_collection:
                    todo.append(rel.rstrip("/") + "/")
                else:
                    yield rel

    def _parse_multistatus(self, body: bytes) -> Iterator[tuple[str, bool]]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise DatastoreError(f"WebDAV listing under {self.root_url}: unreadable PROPFIND answer ({exc})") from exc
        for resp in root.iter(f"{_DAV_NS}response"):
            href = resp.findtext(f"{_DAV_NS}href") or ""
            path = unquote(urlsplit(href).path)
            if not path.startswith(self._base_path):
                continue
            rel = path[len(self._base_path):]
            is_collection = resp.find(f".//{_DAV_NS}collection") is not None
            yield rel, is_collection

    def open_ranged(self, rel: str, size: int | None = None) -> DavRangeFile:
        """A read-only, seekable file object over ``rel`` that reads with HTTP ``Range`` requests.

        Parameters
        ----------
        size : int, optional
            The file's size if known (the datastore record has it); else a HEAD asks.

        Raises
        ------
        DatasetNotFoundError
            No such file.
        """
        if size is None:
            size = self.size(rel)
            if size is None:
                raise DatasetNotFoundError(f"WebDAV file {self.uri(rel)} does not exist (HTTP 404)")
        return DavRangeFile(self, rel, size)

    def read_range(self, rel: str, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of ``rel`` by one ``Range`` request.

        Raises
        ------
        DatastoreError
            The server ignored the range (HTTP 200 instead of 206) for a partial read.
        """
        if stop <= start:
            return b""
        response = self._request("GET", rel, "ranged read", ok=(206, 200), stream=True,
                                 headers={"Range": f"bytes={start}-{stop - 1}"})
        try:
            if response.status_code == 200:
                raise DatastoreError(
                    f"WebDAV server at {self._origin} ignored a Range request for {self.uri(rel)} (HTTP 200); "
                    "cutouts need a server with byte-range support"
                )
            data = response.read()
        finally:
            response.close()
        self.stats.bytes_received += len(data)
        return data


class DavRangeFile(io.RawIOBase):
    """A seekable, read-only view of one WebDAV file; each read is an HTTP ``Range`` request.

    A read that continues where the last one ended (sequential: FITS header
    blocks) fetches at least ``backend.readahead`` bytes and keeps them, so a
    header scan costs one request per few blocks; a read after a seek (a
    cutout's next row) fetches exactly the bytes asked for.
    """

    def __init__(self, backend: DavBackend, rel: str, size: int) -> None:
        super().__init__()
        self._backend = backend
        self._rel = rel
        self._size = size
        self._pos = 0
        self._block_start = 0
        self._block = b""
        self._last_end = 0
        self.name = backend.uri(rel)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position in {self.name}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        end = self._pos + want
        block_end = self._block_start + len(self._block)
        if not (self._block_start <= self._pos and end <= block_end):
            ahead = self._backend.readahead if self._pos == self._last_end else 0
            stop = min(self._size, max(end, self._pos + ahead))
            self._block = self._backend.read_range(self._rel, self._pos, stop)
            self._block_start = self._pos
            if len(self._block) < want:
                raise DatasetCorruptError(f"{self.name} is shorter than its recorded size of {self._size} bytes")
        offset = self._pos - self._block_start
        view[:want] = self._block[offset:offset + want]
        self._pos = self._last_end = end
        return want

    def readall(self) -> bytes:
        data = self._backend.read_range(self._rel, self._pos, self._size)
        self._pos += len(data)
        return data
