"""The root of every exception nightshift raises.

Each subpackage defines a small hierarchy under :class:`NightshiftError`::

    NightshiftError
    ├── events.EventError
    │   ├── events.SchemaError            (schema file invalid or incompatible)
    │   ├── events.DecodeError            (bytes are not a valid event)     [non-retriable]
    │   ├── events.EventValidationError   (decoded, but content impossible) [non-retriable]
    │   └── events.DeliveryError          (broker did not accept a message) [retriable]
    └── ...

The development package of the checkout (``nightshift_dev``) derives its errors from it too
(``nightshift_dev.devstack.StackError``, ``nightshift_dev.fleet.RunnerStartError``).

Every class carries ``retriable`` so callers (consumers, executors) can decide
between a retry and the dead-letter topic without string matching.
"""

from __future__ import annotations

__all__ = ["NightshiftError"]


class NightshiftError(Exception):
    """Base class of every error raised by nightshift.

    Attributes
    ----------
    retriable : bool
        Whether repeating the same operation later may succeed.
    error_type : str
        A stable code for errors that cross a wire (dead-letter headers, HTTP).
    """

    retriable: bool = False
    error_type: str = "nightshift"
