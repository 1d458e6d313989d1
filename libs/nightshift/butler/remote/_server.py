"""The butler's HTTP read API (aiohttp): registry queries and datastore files for clients without database access.

Every route but ``/api/v1/ping`` needs ``Authorization: Bearer <token>``; the
token is compared in constant time (:func:`hmac.compare_digest`) and never
logged. A missing or wrong token is HTTP 401 with a JSON body saying what to
send. Query routes take JSON bodies; ``where`` expressions travel as text and
are parsed and bound by the registry's query language on the server (the
values go through ``bind``, never into SQL text).

Routes (all under ``/api/v1``):

========================  =====  ==================================================
``/info``                 GET    repository description, universe, storage classes
``/collections``          GET    ``?pattern=`` collection names
``/dataset_types``        GET    ``?pattern=`` dataset types
``/datasets/{id}``        GET    one dataset ref
``/query/datasets``       POST   :meth:`Registry.query_datasets`
``/query/data_ids``       POST   :meth:`Registry.query_data_ids`
``/query/records``        POST   :meth:`Registry.query_dimension_records`
``/find``                 POST   :meth:`Registry.find_dataset`
``/datastore/{path}``     GET    a datastore file or record, with ``Range`` support
                          HEAD
========================  =====  ==================================================

The datastore route serves the file datastore's tree (files and their
``_records/`` JSON), so the client reads datasets with the ordinary
:class:`~nightshift.butler.datastores.FileDatastore` over a WebDAV-style
backend, byte ranges (cutouts) included.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from .._butler import Butler
from .._registry_exceptions import RegistryError
from ..datastores import DatasetNotFoundError, DatastoreError
from ._serialize import record_to_json, ref_to_json

__all__ = ["API_PREFIX", "ButlerReadAPI"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
_MAX_LIMIT = 100_000
_HIDDEN = ("_staging", "_trash")


class ButlerReadAPI:
    """The read API of one repository, as an aiohttp application.

    Parameters
    ----------
    open_butler : callable
        Makes a :class:`Butler` of the repository; called once per worker
        thread (a butler, like its registry, serves one thread).
    token : SecretStr
        The bearer token clients must send.
    workers : int
        Threads running registry queries and datastore reads.
    """

    def __init__(self, open_butler: Callable[[], Butler], token: SecretStr, workers: int = 4) -> None:
        if not token.get_secret_value():
            raise ValueError("the read API needs a non-empty token")
        self._open = open_butler
        self._token = token.get_secret_value().encode()
        self._local = threading.local()
        self._butlers: list[Butler] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="butler-read")

    # -- plumbing --------------------------------------------------------------------------------
    def _butler(self) -> Butler:
        butler: Butler | None = getattr(self._local, "butler", None)
        if butler is None:
            butler = self._local.butler = self._open()
            with self._lock:
                self._butlers.append(butler)
        return butler

    async def _run(self, fn: Callable[[Butler], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(self._butler()))

    def close(self) -> None:
        """Stop the worker threads and close their butlers (idempotent)."""
        self._pool.shutdown(wait=True)
        with self._lock:
            for butler in self._butlers:
                butler.close()
            self._butlers.clear()

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path == f"{API_PREFIX}/ping":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _auth_error("no bearer token: send 'Authorization: Bearer <token>' (the token the registry "
                               "service was started with, NIGHTSHIFT_REGISTRY_TOKEN)")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            return _auth_error("the bearer token was not accepted: check the token you were given")
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except DatasetNotFoundError as exc:
            return _error(404, exc)
        except (RegistryError, DatastoreError, KeyError, ValueError, TypeError) as exc:
            return _error(400, exc)

    def app(self) -> web.Application:
        """The aiohttp application (its cleanup closes this API)."""
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=4 * 1024 * 1024)
        p = API_PREFIX
        app.router.add_get(f"{p}/ping", self._ping)
        app.router.add_get(f"{p}/info", self._info)
        app.router.add_get(f"{p}/collections", self._collections)
        app.router.add_get(f"{p}/dataset_types", self._dataset_types)
        app.router.add_get(f"{p}/datasets/{{id}}", self._dataset)
        app.router.add_post(f"{p}/query/datasets", self._query_datasets)
        app.router.add_post(f"{p}/query/data_ids", self._query_data_ids)
        app.router.add_post(f"{p}/query/records", self._query_records)
        app.router.add_post(f"{p}/find", self._find)
        app.router.add_route("GET", f"{p}/datastore/{{path:.+}}", self._datastore)
        app.router.add_route("HEAD", f"{p}/datastore/{{path:.+}}", self._datastore)

        async def cleanup(_app: web.Application) -> None:
            await asyncio.to_thread(self.close)

        app.on_cleanup.append(cleanup)
        return app

    # -- routes ----------------------------------------------------------------------------------
    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _info(self, request: web.Request) -> web.Response:
        def info(b: Butler) -> dict[str, Any]:
            desc = b.registry.describe()
            desc.pop("database", None)  # the database URL is the server's business
            return {"repository": desc, "universe": b.registry.universe.to_config(),
                    "storage_classes": b.config.get("storage_classes") or {}}

        return web.json_response(await self._run(info))

    async def _collections(self, request: web.Request) -> web.Response:
        pattern = request.query.get("pattern")
        return web.json_response(await self._run(lambda b: b.registry.query_collections(pattern)))

    async def _dataset_types(self, request: web.Request) -> web.Response:
        pattern = request.query.get("pattern")
        return web.json_response(
            await self._run(lambda b: [dt.to_dict() for dt in b.registry.query_dataset_types(pattern)]))

    async def _dataset(self, request: web.Request) -> web.Response:
        dataset_id = uuid.UUID(request.match_info["id"])
        ref = await self._run(lambda b: b.registry.get_dataset(dataset_id))
        if ref is None:
            return _error(404, DatasetNotFoundError(f"no dataset with id {dataset_id} in the registry"))
        return web.json_response(ref_to_json(ref))

    async def _query_datasets(self, request: web.Request) -> web.Response:
        q = await _body(request)

        def query(b: Butler) -> list[dict[str, Any]]:
            refs = b.registry.query_datasets(
                _str(q, "dataset_type"), q["collections"], where=str(q.get("where") or ""),
                bind=q.get("bind") or {}, data_id=q.get("data_id") or {}, find_first=bool(q.get("find_first", True)),
                exclude_flags=q.get("exclude_flags") or (), limit=_limit(q))
            return [ref_to_json(r) for r in refs]

        return web.json_response(await self._run(query))

    async def _query_data_ids(self, request: web.Request) -> web.Response:
        q = await _body(request)
        return web.json_response(await self._run(lambda b: b.registry.query_data_ids(
            q["dimensions"], where=str(q.get("where") or ""), bind=q.get("bind") or {},
            data_id=q.get("data_id") or {}, datasets=q.get("datasets") or (), collections=q.get("collections"))))

    async def _query_records(self, request: web.Request) -> web.Response:
        q = await _body(request)

        def query(b: Butler) -> list[dict[str, Any]]:
            records = b.registry.query_dimension_records(
                _str(q, "element"), where=str(q.get("where") or ""), bind=q.get("bind") or {},
                data_id=q.get("data_id") or {})
            return [record_to_json(r) for r in records]

        return web.json_response(await self._run(query))

    async def _find(self, request: web.Request) -> web.Response:
        q = await _body(request)
        ref = await self._run(lambda b: b.registry.find_dataset(
            _str(q, "dataset_type"), q.get("data_id") or {}, q["collections"]))
        return web.json_response(None if ref is None else ref_to_json(ref))

    async def _datastore(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts) or parts[0] in _HIDDEN or "\\" in rel:
            return _error(404, DatasetNotFoundError(f"no datastore file {rel!r}"))
        backend = await self._run(lambda b: getattr(b.datastore, "backend", None))
        if backend is None:
            return _error(404, DatasetNotFoundError("this repository's datastore keeps no files"))
        if not getattr(backend, "remote", True):
            path = backend.local_path(rel)
            if not path.is_file():
                return _error(404, DatasetNotFoundError(f"no datastore file {rel!r}"))
            return web.FileResponse(path)  # HEAD, Range (206) and conditional requests by aiohttp
        return await self._remote_file(request, backend, rel)

    async def _remote_file(self, request: web.Request, backend: Any, rel: str) -> web.StreamResponse:
        """A file of an object-store backend: HEAD -> size; GET with ``Range`` -> that range only (S3 ranged GET)."""
        size = await asyncio.to_thread(backend.size, rel)
        if size is None:
            return _error(404, DatasetNotFoundError(f"no datastore file {rel!r}"))
        headers = {"Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(size)})
        rng = request.http_range
        start, stop = rng.start, rng.stop
        if start is None and stop is None:
            data = await asyncio.to_thread(backend.get_bytes, rel)
            if data is None:
                return _error(404, DatasetNotFoundError(f"no datastore file {rel!r}"))
            return web.Response(body=data, headers=headers)
        first = start if start is not None and start >= 0 else max(size + (start or 0), 0)
        last = min((stop if stop is not None else size), size) - 1
        if start is None and stop is not None:  # "bytes=-N": the last N bytes
            first, last = max(size - stop, 0), size - 1
        if first > last:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        data = await asyncio.to_thread(_read_range, backend, rel, first, last)
        return web.Response(status=206, body=data,
                            headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"})


def _read_range(backend: Any, rel: str, first: int, last: int) -> bytes:
    client = getattr(backend, "client", None)
    if client is not None and hasattr(backend, "bucket"):  # S3: a ranged GET
        resp = client.get_object(Bucket=backend.bucket, Key=backend.key(rel), Range=f"bytes={first}-{last}")
        data: bytes = resp["Body"].read()
        return data
    whole = backend.get_bytes(rel) or b""
    return bytes(whole[first:last + 1])


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the request body must be a JSON object")
    return body


def _str(q: dict[str, Any], key: str) -> str:
    value = q.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _limit(q: dict[str, Any]) -> int | None:
    limit = q.get("limit")
    if limit is None:
        return None
    if not isinstance(limit, int) or not 0 < limit <= _MAX_LIMIT:
        raise ValueError(f"'limit' must be an integer in 1..{_MAX_LIMIT}")
    return limit


def _auth_error(message: str) -> web.Response:
    return web.json_response({"error_type": "unauthorized", "message": message}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="nightshift-butler"'})


def _error(status: int, exc: BaseException) -> web.Response:
    return web.json_response({"error_type": type(exc).__name__, "message": str(exc)}, status=status)
