"""The remote butler: the butler's read API over HTTP, for clients without database access (DMS-MWBT-REQ-0040).

::

    butler = Butler.from_url("https://butler.example/", token=..., collections=["LSSTCam/prompt/20261205"])
    refs = butler.registry.query_datasets("calexp", "LSSTCam/prompt/20261205", where="visit = v", bind={"v": 7})
    exp = butler.get(refs[0])
    cut = butler.get(refs[0], parameters={"bbox": Box(0, 0, 64, 64)})   # only the cutout's bytes travel

Registry calls are HTTP requests to the registry service (:mod:`._server`);
``where`` expressions travel as text and are parsed and bound on the server.
Datasets are read with the ordinary :class:`FileDatastore`, whose backend is a
:class:`DavBackend` over the service's ``/api/v1/datastore`` route: full reads
are verified against the record's checksum, component and ``bbox`` reads fetch
byte ranges. The token comes from the argument or ``$NIGHTSHIFT_BUTLER_TOKEN``
(a :class:`~pydantic.SecretStr`), is sent only in the ``Authorization`` header
and never appears in a message or ``repr``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .. import _registry_exceptions as _reg_errors
from .._dataset_ref import DatasetRef
from .._dataset_type import DatasetType
from .._storage_class import StorageClassFactory
from ..datastores import DatasetNotFoundError, DavBackend, FileDatastore
from ..datastores import _exceptions as _ds_errors
from ..dimensions import DimensionRecord, DimensionUniverse
from ._errors import RemoteAuthenticationError, RemoteButlerError
from ._serialize import record_from_json, ref_from_json

__all__ = ["RemoteButler", "RemoteButlerSettings", "RemoteRegistry"]

_API = "/api/v1"


class RemoteButlerSettings(BaseSettings):
    """Client settings from the environment: ``NIGHTSHIFT_BUTLER_URL`` and ``NIGHTSHIFT_BUTLER_TOKEN``."""

    model_config = SettingsConfigDict(env_prefix="NIGHTSHIFT_BUTLER_", frozen=True, extra="ignore")

    url: str | None = None
    token: SecretStr | None = None


class RemoteRegistry:
    """The read half of :class:`~nightshift.butler.Registry`, answered by a registry service.

    Same method names and arguments as the registry's read methods; the
    results are the same types (:class:`DatasetRef`, :class:`DimensionRecord`,
    data ID dicts, names).
    """

    def __init__(self, client: httpx.Client, base: str) -> None:
        self._client = client
        self._base = base
        self._info: dict[str, Any] | None = None
        self.universe = DimensionUniverse(self.info()["universe"])

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self._base}{_API}{path}"
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise RemoteButlerError(f"cannot reach the butler service at {self._base} ({type(exc).__name__})",
                                    retriable=True) from exc
        if response.status_code == 200:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {"error_type": "http", "message": response.text[:500]}
        message = str(body.get("message", ""))
        if response.status_code == 401:
            raise RemoteAuthenticationError(
                f"the butler service at {self._base} refused the request (HTTP 401): {message}")
        raise _remote_error(str(body.get("error_type", "")), message, response.status_code, self._base)

    def info(self) -> dict[str, Any]:
        """The repository's description, universe and storage classes (one request, then cached)."""
        if self._info is None:
            self._info = self._request("GET", "/info")
        return self._info

    def describe(self) -> dict[str, Any]:
        """As :meth:`Registry.describe`, without the database URL."""
        return dict(self.info()["repository"])

    def query_collections(self, pattern: str | None = None) -> list[str]:
        """Collection names, optionally matching a glob."""
        params = {"pattern": pattern} if pattern is not None else {}
        return list(self._request("GET", "/collections", params=params))

    def query_dataset_types(self, pattern: str | None = None) -> list[DatasetType]:
        """Registered dataset types, optionally matching a glob."""
        params = {"pattern": pattern} if pattern is not None else {}
        return [DatasetType.from_dict(d) for d in self._request("GET", "/dataset_types", params=params)]

    def get_dataset_type(self, name: str) -> DatasetType:
        """The registered dataset type ``name`` (raises :class:`MissingDatasetTypeError`)."""
        for dt in self.query_dataset_types(name):
            if dt.name == name:
                return dt
        raise _reg_errors.MissingDatasetTypeError(f"dataset type {name!r} is not registered")

    def get_dataset(self, dataset_id: uuid.UUID) -> DatasetRef | None:
        """The dataset with this id, or None."""
        try:
            return ref_from_json(self._request("GET", f"/datasets/{dataset_id}"))
        except DatasetNotFoundError:
            return None

    def query_datasets(
        self,
        dataset_type: str | DatasetType,
        collections: str | Sequence[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
        find_first: bool = True,
        exclude_flags: Iterable[str] = (),
        limit: int | None = None,
    ) -> list[DatasetRef]:
        """As :meth:`Registry.query_datasets` (``where`` parsed and bound on the server)."""
        body = {
            "dataset_type": dataset_type if isinstance(dataset_type, str) else dataset_type.name,
            "collections": [collections] if isinstance(collections, str) else list(collections),
            "where": where, "bind": dict(bind or {}), "data_id": dict(data_id or {}), "find_first": find_first,
            "exclude_flags": list(exclude_flags), "limit": limit,
        }
        return [ref_from_json(r) for r in self._request("POST", "/query/datasets", json=body)]

    def query_data_ids(
        self,
        dimensions: Iterable[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
        datasets: Iterable[str | DatasetType] = (),
        collections: str | Sequence[str] | None = None,
    ) -> list[dict[str, int | str]]:
        """As :meth:`Registry.query_data_ids`."""
        body = {
            "dimensions": list(dimensions), "where": where, "bind": dict(bind or {}), "data_id": dict(data_id or {}),
            "datasets": [d if isinstance(d, str) else d.name for d in datasets],
            "collections": [collections] if isinstance(collections, str) else collections,
        }
        return list(self._request("POST", "/query/data_ids", json=body))

    def query_dimension_records(
        self, element: str, *, where: str = "", bind: Mapping[str, Any] | None = None,
        data_id: Mapping[str, int | str] | None = None,
    ) -> list[DimensionRecord]:
        """As :meth:`Registry.query_dimension_records`."""
        body = {"element": element, "where": where, "bind": dict(bind or {}), "data_id": dict(data_id or {})}
        return [record_from_json(r) for r in self._request("POST", "/query/records", json=body)]

    def find_dataset(
        self, dataset_type: str | DatasetType, data_id: Mapping[str, int | str], collections: str | Sequence[str],
    ) -> DatasetRef | None:
        """As :meth:`Registry.find_dataset`: the first match along ``collections``, or None."""
        body = {
            "dataset_type": dataset_type if isinstance(dataset_type, str) else dataset_type.name,
            "data_id": dict(data_id),
            "collections": [collections] if isinstance(collections, str) else list(collections),
        }
        found = self._request("POST", "/find", json=body)
        return None if found is None else ref_from_json(found)


class RemoteButler:
    """A read-only :class:`~nightshift.butler.Butler` pointed at a registry service URL.

    Parameters
    ----------
    url : str
        The service's base URL (``http(s)://host:port``); ``$NIGHTSHIFT_BUTLER_URL`` by default.
    token : str or SecretStr, optional
        Bearer token; ``$NIGHTSHIFT_BUTLER_TOKEN`` by default.
    collections : str or sequence of str, optional
        Default search path for :meth:`find` and :meth:`get`.
    timeout : float
        Seconds per request.

    Raises
    ------
    RemoteAuthenticationError
        The service refused the token (or none was given).
    RemoteButlerError
        No URL, or the service cannot be reached.
    """

    def __init__(self, url: str | None = None, token: str | SecretStr | None = None,
                 collections: str | Sequence[str] | None = None, *, timeout: float = 60.0) -> None:
        env = RemoteButlerSettings()
        url = url or env.url
        if not url:
            raise RemoteButlerError("no butler service URL: pass url= or set NIGHTSHIFT_BUTLER_URL")
        if not url.startswith(("http://", "https://")):
            raise RemoteButlerError(f"{url!r} is not an http(s):// URL of a butler service")
        secret = SecretStr(token) if isinstance(token, str) else (token if token is not None else env.token)
        self.url = url.rstrip("/")
        if secret is not None and not secret.get_secret_value():
            secret = None  # an empty token is no token (the service answers 401 with what to send)
        headers = {"Authorization": f"Bearer {secret.get_secret_value()}"} if secret is not None else {}
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=False)
        try:
            self.registry = RemoteRegistry(self._client, self.url)
        except BaseException:
            self._client.close()
            raise
        self.storage_classes = StorageClassFactory(self.registry.info().get("storage_classes") or None)
        self.datastore = FileDatastore(DavBackend(f"{self.url}{_API}/datastore", token=secret), name="remote",
                                       storage_classes=self.storage_classes)
        self.collections: list[str] = [collections] if isinstance(collections, str) else list(collections or [])

    def __repr__(self) -> str:
        return f"RemoteButler({self.url!r})"  # never the token

    def close(self) -> None:
        """Close the HTTP connections (idempotent)."""
        self._client.close()
        self.datastore.backend.close()

    def __enter__(self) -> RemoteButler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, dataset_type: str | DatasetType, data_id: Mapping[str, int | str] | None = None, *,
             collections: str | Sequence[str] | None = None, **kwargs: int | str) -> DatasetRef:
        """The resolved ref of a dataset (a component ref for ``calexp.wcs``), as :meth:`Butler.find`.

        Raises
        ------
        DatasetNotFoundError
            No such dataset in the collections.
        """
        name = dataset_type if isinstance(dataset_type, str) else dataset_type.name
        parent, _, component = name.partition(".")
        search = [collections] if isinstance(collections, str) else list(collections or self.collections)
        if not search:
            raise ValueError("no collections to search: RemoteButler(url, collections=...) or collections=...")
        full_id = {**(data_id or {}), **kwargs}
        ref = self.registry.find_dataset(parent, full_id, search)
        if ref is None:
            raise DatasetNotFoundError(f"no {parent} with data ID {full_id} in collections {search}")
        return ref.make_component_ref(component) if component else ref

    def get(self, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, int | str] | None = None, *,
            parameters: Mapping[str, Any] | None = None, collections: str | Sequence[str] | None = None,
            storage_class: str | None = None, **kwargs: int | str) -> Any:
        """Read a dataset, component or subset (``parameters={"bbox": ...}``), as :meth:`Butler.get`."""
        ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(
            dataset_type, data_id, collections=collections, **kwargs)
        return self.datastore.get(ref, parameters, storage_class)

    def get_uri(self, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, int | str] | None = None,
                **kwargs: Any) -> str:
        """The HTTP URL the dataset's file is served at (by this service)."""
        ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(dataset_type, data_id, **kwargs)
        url: str = self.datastore.backend.url(self.datastore.record(ref).path)
        return url

    def exists(self, dataset_type: str | DatasetType | DatasetRef, data_id: Mapping[str, int | str] | None = None,
               *, collections: str | Sequence[str] | None = None, **kwargs: int | str) -> bool:
        """Whether the dataset is in the registry and its file in the datastore."""
        try:
            ref = dataset_type if isinstance(dataset_type, DatasetRef) else self.find(
                dataset_type, data_id, collections=collections, **kwargs)
        except DatasetNotFoundError:
            return False
        return self.datastore.exists(ref)

    def query_datasets(self, dataset_type: str | DatasetType, collections: str | Sequence[str] | None = None,
                       **kwargs: Any) -> list[DatasetRef]:
        """Shortcut for ``registry.query_datasets`` with the butler's collections by default."""
        return self.registry.query_datasets(dataset_type, collections or self.collections, **kwargs)


def _remote_error(error_type: str, message: str, status: int, base: str) -> Exception:
    """The exception the server raised, re-created by class name when it is a registry/datastore error."""
    cls = getattr(_reg_errors, error_type, None) or getattr(_ds_errors, error_type, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and error_type.endswith("Error"):
        try:
            return cls(message)
        except TypeError:  # a class with another signature
            pass
    return RemoteButlerError(f"the butler service at {base} answered HTTP {status}: {error_type}: {message}")

