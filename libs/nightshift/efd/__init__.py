"""The Engineering and Facility Database (EFD): engineering time series in PostgreSQL.

Two forms in one schema (REQ-0041..0045):

* **base** -- raw topics at their native rates (dome and DIMM seeing,
  temperatures, wind, mount position, rotator angle): ``base_<topic>``;
* **transformed** -- per-visit summaries (mean, min, max, sample count) derived
  from base by :func:`transform_visits`, a documented, re-runnable transform:
  ``transformed_<topic>``.

:meth:`Efd.reader` gives the one query interface over either form (the same
methods and arguments, REQ-0044): by topic and time window, by a visit's
timespan from its registry record, and over a dataset's exposure
(:meth:`EfdReader.query_dataset`); :func:`record_dataset_metadata` stores such
values as the dataset's registry metadata. :func:`simulate_efd` writes
plausible streams for the visits of a registry. See ``docs/efd.md``.
"""

from ._associate import record_dataset_metadata
from ._errors import EfdError, EfdInputError, EfdSchemaError, UnknownTopicError
from ._result import EfdResult
from ._settings import EfdSettings
from ._simulate import simulate_efd
from ._store import Efd, EfdReader, Form
from ._topics import TOPICS, Topic, get_topic
from ._transform import TRANSFORM_VERSION, TransformReport, transform_visits

__all__ = [
    "TOPICS",
    "TRANSFORM_VERSION",
    "Efd",
    "EfdError",
    "EfdInputError",
    "EfdReader",
    "EfdResult",
    "EfdSchemaError",
    "EfdSettings",
    "Form",
    "Topic",
    "TransformReport",
    "UnknownTopicError",
    "get_topic",
    "record_dataset_metadata",
    "simulate_efd",
    "transform_visits",
]
