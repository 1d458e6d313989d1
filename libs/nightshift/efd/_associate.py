"""Recording a dataset's engineering values as its registry metadata (REQ-0045)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import EfdInputError
from ._store import EfdReader

if TYPE_CHECKING:
    from ..butler import DatasetRef
    from ..butler.registry import Registry

__all__ = ["record_dataset_metadata"]


def record_dataset_metadata(
    reader: EfdReader, registry: Registry, ref: DatasetRef, values: Mapping[str, str]
) -> dict[str, float | None]:
    """Store the mean engineering values over a dataset's exposure as the dataset's metadata.

    Parameters
    ----------
    reader : EfdReader
        Either form of the EFD.
    registry : Registry
        The dataset's registry.
    ref : DatasetRef
        The dataset (its data ID needs a visit or an exposure).
    values : mapping of str to str
        Metadata key -> ``"<topic>.<field>"``, e.g. ``{"efd_dome_seeing": "dome_seeing.fwhm"}``. The
        keys must be declared float metadata of the dataset type
        (``DatasetType(..., metadata={"efd_dome_seeing": "float"})``).

    Returns
    -------
    dict
        The values stored (None where the EFD had no samples over the exposure).

    Raises
    ------
    EfdInputError
        A value that is not ``topic.field``.
    UnknownTopicError
        An unknown topic.
    nightshift.butler.registry.DatasetMetadataError
        A key the dataset type does not declare.
    """
    wanted: dict[str, tuple[str, str]] = {}
    for key, path in values.items():
        topic, _, field = path.partition(".")
        if not topic or not field:
            raise EfdInputError(f"metadata {key!r}: name the EFD value as '<topic>.<field>', got {path!r}")
        wanted[key] = (topic, field)
    results = reader.query_dataset(registry, ref, sorted({t for t, _ in wanted.values()}))
    out: dict[str, Any] = {}
    for key, (topic, field) in wanted.items():
        result = results[topic]
        if field not in result.columns:
            raise EfdInputError(f"metadata {key!r}: topic {topic!r} has fields {result.fields}, not {field!r}")
        out[key] = result.mean(field)
    registry.set_dataset_metadata(ref, out)
    return out
