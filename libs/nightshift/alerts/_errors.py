"""Errors of the alert library::

    NightshiftError
    └── AlertError
        ├── AlertSchemaError (ValueError)      no such schema version, or tables that cannot fill it
        ├── CutoutError (ValueError)           cutout arrays of the wrong shape or type
        ├── PublishError                       the broker did not acknowledge every alert   [retriable]
        ├── ArchiveError                       the object store refused an archive write    [retriable]
        └── AlertInputsError                   an alert-inputs bundle cannot be written or read [unless permanent]

Rows that cannot become a valid alert are not raised: they come back as
:class:`~nightshift.alerts.BadAlert` entries (and go to the dead-letter topic)
while the other alerts of the detector are published.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import NightshiftError

__all__ = ["AlertError", "AlertInputsError", "AlertSchemaError", "ArchiveError", "CutoutError", "PublishError"]


class AlertError(NightshiftError):
    """Base of the alert library's errors."""

    error_type = "alert"


class AlertSchemaError(AlertError, ValueError):
    """The schema version is not shipped, or the tables lack columns the schema requires."""

    error_type = "alert_schema"


class CutoutError(AlertError, ValueError):
    """Cutout planes of inconsistent shape, or a WCS that cannot be written."""

    error_type = "cutout"


class PublishError(AlertError):
    """The broker did not acknowledge every alert of a batch (after the bounded retries).

    ``report`` holds the :class:`~nightshift.alerts.PublishReport` (counts per
    visit and detector, the alerts that failed) when the failure happened
    after sending began.
    """

    error_type = "alert_publish"
    retriable = True

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class ArchiveError(AlertError):
    """The object store did not accept an archive file or index."""

    error_type = "alert_archive"
    retriable = True


class AlertInputsError(AlertError):
    """An alert-inputs bundle could not be written or read.

    ``permanent`` is true when retrying cannot help (the object is missing or is
    not a bundle): the event pointing at it belongs on the dead-letter topic.
    """

    error_type = "alert_inputs"

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retriable = not permanent
