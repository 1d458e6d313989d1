"""A write-only datastore that publishes datasets as JSON to a REST endpoint (DMS-MWBT-REQ-0072).

Typically chained behind a file datastore with ``accept: [<metric types>]``
so metric measurements are both stored and POSTed to a QA service::

    {"cls": "chained", "datastores": [
        {"cls": "posix", "root": "datastore"},
        {"cls": "rest", "url": "http://qa.example/api/metrics", "accept": ["metric"]}]}

Each put POSTs ``{"dataset_type", "data_id", "run", "id", "value"}``;
connection errors and 5xx/429 replies are retried with exponential backoff,
then reported as :class:`StorageUnavailableError`; 4xx is a
:class:`DatastoreError` (the service refused the data). The endpoint keeps
nothing we can read back, so ``get`` raises :class:`DatasetNotFoundError`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._dataset_ref import DatasetRef
from .._file_provenance import FileProvenance
from .._storage_class import StorageClassFactory
from ._base import Constraints, Datastore, DatastoreTrash
from ._exceptions import DatasetNotFoundError, DatastoreError, StorageUnavailableError

__all__ = ["RestPublishDatastore"]


class RestPublishDatastore(Datastore):
    """POST each dataset (JSON-serializable) to ``url``.

    Parameters
    ----------
    url : str
        Endpoint receiving the POSTs.
    max_attempts : int
        Attempts per dataset (with exponential backoff from ``backoff`` seconds).
    timeout : float
        Seconds per request.
    headers : mapping, optional
        Extra HTTP headers (e.g. an authorization token taken from the environment by the caller).
    """

    def __init__(
        self,
        url: str,
        name: str = "rest",
        storage_classes: StorageClassFactory | None = None,
        constraints: Constraints | None = None,
        max_attempts: int = 3,
        backoff: float = 0.2,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, storage_classes, constraints)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"REST datastore URL must be http(s), got {url!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.url = url
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._published: dict[Any, DatasetRef] = {}

    def put(self, obj: Any, ref: DatasetRef, provenance: FileProvenance | None = None) -> None:
        self._check_put(obj, ref)
        try:
            body = json.dumps({"dataset_type": ref.dataset_type.name, "data_id": dict(ref.data_id), "run": ref.run,
                               "id": str(ref.id), "value": obj}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise DatastoreError(f"{ref.dataset_type.name} is not JSON-serializable for {self.url}: {exc}") from exc
        last: Exception | None = None
        for attempt in range(self.max_attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", **self.headers})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) checked
                    resp.read()
                self._published[ref.id] = ref
                return
            except urllib.error.HTTPError as exc:
                exc.close()  # release the connection
                if exc.code < 500 and exc.code != 429:
                    raise DatastoreError(f"{self.url} refused {ref.dataset_type.name}: HTTP {exc.code}") from exc
                last = exc
            except (urllib.error.URLError, OSError) as exc:
                last = exc
        raise StorageUnavailableError(
            f"publishing {ref.dataset_type.name} to {self.url} failed after {self.max_attempts} attempt(s): {last}"
        ) from last

    def get(self, ref: DatasetRef, parameters: Mapping[str, Any] | None = None,
            storage_class: str | None = None) -> Any:
        raise DatasetNotFoundError(f"{self.name!r} publishes to {self.url} and cannot read datasets back")

    def exists(self, ref: DatasetRef) -> bool:
        return False  # nothing readable here; chained gets fall through to other children

    def remove(self, ref: DatasetRef) -> None:
        """Forget a publication made by this process (the service keeps what it received)."""
        if self._published.pop(ref.id, None) is None:
            raise DatasetNotFoundError(f"{ref.dataset_type.name} was not published by {self.name!r}")

    def trash(self, refs: Iterable[DatasetRef]) -> DatastoreTrash:
        """Forget this process's publications of ``refs`` (the service keeps what it received)."""
        taken = {r.id: self._published.pop(r.id) for r in dict.fromkeys(refs) if r.id in self._published}
        return DatastoreTrash(lambda: self._published.update(taken), taken.clear, list(taken.values()))

    def refs(self) -> Iterator[DatasetRef]:
        return iter(())

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "url": self.url, "max_attempts": self.max_attempts}
