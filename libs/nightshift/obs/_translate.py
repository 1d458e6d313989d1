"""Header corrections and translation through ``astro_metadata_translator``.

Corrections, in the translator's order (``fix_header``): a YAML file named
``<instrument>-<observation id>.yaml`` from the repository's own corrections
directory, else from ``$METADATA_CORRECTIONS_PATH``, else the one shipped with
the translator package; then the translator's code fixes (e.g. DECam bias
frames get the ``solid plate`` filter). Every keyword changed is recorded with
its old and new value and where the change came from; the recorded
corrections travel with the dataset and are applied again whenever the raw is
read (DMS-MWBT-REQ-0050).
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from astro_metadata_translator import MetadataTranslator, ObservationInfo, fix_header

from . import _translators  # noqa: F401 - registers the simulated cameras' translators
from ._exceptions import RawHeaderError, UnknownInstrumentError
from ._headers import RawHeader

__all__ = ["apply_corrections", "find_translator", "translate"]

_FIX_PREFIX = "HIERARCH ASTRO METADATA FIX"
_FIX_KEYS = ("ASTRO METADATA FIX MODIFIED", "ASTRO METADATA FIX DATE", "ASTRO METADATA FIX FILE",
             "ASTRO METADATA FIX VERSION")

#: The observation properties ingest needs (translating only these is ~20x faster than all).
PROPERTIES = frozenset({
    "instrument", "observation_id", "exposure_id", "visit_id", "detector_num", "physical_filter",
    "datetime_begin", "datetime_end", "exposure_time", "observation_type", "science_program", "object",
    "tracking_radec", "boresight_rotation_angle", "boresight_airmass", "observing_day", "observing_day_offset",
    "exposure_group", "altaz_begin",
})


#: INSTRUME value -> the translator that last recognised it (tried first).
_BY_INSTRUME: dict[str, type[MetadataTranslator]] = {}


def find_translator(header: Mapping[str, Any], filename: str | None = None) -> type[MetadataTranslator]:
    """The translator class that understands ``header``.

    Raises
    ------
    UnknownInstrumentError
        No registered translator recognises the header.
    """
    hint = str(header.get("INSTRUME", ""))
    known = _BY_INSTRUME.get(hint)
    if known is not None and known.can_translate(header, filename=filename):
        return known
    try:
        cls: type[MetadataTranslator] = MetadataTranslator.determine_translator(header, filename=filename)
        _BY_INSTRUME[hint] = cls
    except ValueError:
        raise UnknownInstrumentError(
            f"{filename or 'header'}: no header translator recognises this instrument "
            f"(INSTRUME={header.get('INSTRUME')!r}); known: {', '.join(sorted(MetadataTranslator.translators))}"
        ) from None
    return cls


def _file_keys(location: str) -> Mapping[str, Any]:
    """Keys set by a corrections file (a path or ``resource://package/path``)."""
    try:
        if location.startswith("resource://"):
            package, _, rel = location[len("resource://"):].partition("/")
            text = importlib.resources.files(package).joinpath(rel).read_text()
        else:
            text = Path(location).read_text()
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, ModuleNotFoundError):
        return {}
    return data if isinstance(data, Mapping) else {}


def apply_corrections(raw: RawHeader, translator: type[MetadataTranslator],
                      search_path: Sequence[str | Path] = ()) -> dict[str, dict[str, Any]]:
    """Correct ``raw.header`` in place and record each change in ``raw.corrections``.

    Returns
    -------
    dict
        Keyword -> ``{"old": value or None, "new": value, "source": file, resource or "translator <name> <v>"}``.
    """
    before = dict(raw.header)
    header = dict(raw.header)
    fix_header(header, search_path=[str(p) for p in search_path], translator_class=translator,
               filename=raw.source)
    location = header.get(f"{_FIX_PREFIX} FILE")
    from_file = _file_keys(str(location)) if location else {}
    version = header.get(f"{_FIX_PREFIX} VERSION", "")
    for k in [k for k in header if k.startswith(_FIX_PREFIX) or k in _FIX_KEYS]:
        del header[k]
    changes = {}
    for key, value in header.items():
        if key not in before or before[key] != value:
            source = str(location) if key in from_file and from_file[key] == value else \
                f"translator {translator.name} {version}".strip()
            changes[key] = {"old": before.get(key), "new": value, "source": source}
    raw.header = header
    raw.corrections = changes
    return changes


def translate(raw: RawHeader, translator: type[MetadataTranslator],
              properties: frozenset[str] = PROPERTIES) -> ObservationInfo:
    """Translate a (corrected) header into an ``ObservationInfo`` with the given properties.

    Raises
    ------
    RawHeaderError
        A keyword the translator needs is missing or unreadable (the message names it).
    """
    with _translation_errors(raw, translator):
        return ObservationInfo(raw.header, translator_class=translator, pedantic=True, subset=set(properties),
                               filename=raw.source)



@contextmanager
def _translation_errors(raw: RawHeader, translator: type[MetadataTranslator]) -> Iterator[None]:
    """The translator's KeyError/ValueError/TypeError as a :class:`RawHeaderError` naming the file and keyword."""
    try:
        yield
    except KeyError as exc:
        missing = _missing_key(exc)
        what = f"header keyword {missing!r} is missing" if missing else f"header cannot be translated: {exc}"
        raise RawHeaderError(f"{raw.source}[{raw.hdu}]: {what} ({translator.name} translator)") from exc
    except (ValueError, TypeError) as exc:
        raise RawHeaderError(f"{raw.source}[{raw.hdu}]: header cannot be translated by {translator.name}: {exc}") \
            from exc

def _missing_key(exc: KeyError) -> str | None:
    """The header keyword a translator's KeyError is about (ObservationInfo wraps the original)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, KeyError) and cause.args and isinstance(cause.args[0], str):
            text = cause.args[0]
            if " " not in text:
                return text
            found = re.match(r"Could not find \[?'?([^\]' ]+)'?\]? in header", text)
            if found:
                return found.group(1)
        cause = cause.__cause__ or cause.__context__
    return None


@dataclass(frozen=True)
class QuickInfo:
    """The few properties that identify a raw, read without building an ``ObservationInfo``."""

    instrument: str
    exposure_id: int | None
    detector_num: int | None
    observation_id: str


def quick_translate(raw: RawHeader, translator: type[MetadataTranslator]) -> QuickInfo:
    """Instrument, exposure, detector and observation id straight from the translator (to find a cached exposure).

    Raises
    ------
    RawHeaderError
        As :func:`translate`.
    """
    t = translator(raw.header, filename=raw.source)
    with _translation_errors(raw, translator):
        return QuickInfo(str(t.to_instrument()), t.to_exposure_id(), t.to_detector_num(), str(t.to_observation_id()))
