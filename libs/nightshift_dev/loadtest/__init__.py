"""Load tests of Alert Production against the seed's budgets, on the local stack (``nightshift loadtest``).

Development tooling: it starts and kills service processes and drives the running
local stack, so it lives in ``nightshift_dev``, not in the library. The click group is
thin (:mod:`nightshift_dev.loadtest.cli`); everything it runs is here.

- :func:`run_catalogue`: visits (or a night at a cadence, with ``chaos``) of simulated DIA
  catalogues through the APDB store and the real alert-publisher services;
  timeToIssueAlerts per detector and per visit, reconciliation of alerts against the APDB.
- :func:`run_services_night`: a night of rendered raws through all six service processes
  (``nightshift ap run-night``'s setup), with runner/publisher kills and, on a stack of its own,
  broker and PostgreSQL restarts; reconciles alerts, quanta and files against registry rows.
- :func:`run_roundtrip`: timeToWriteReadAlertsDB with separate writer and reader processes.
- :func:`write_report`: ``result.json`` + ``report.html`` with PNG plots in a results directory.
"""

from ._catalogue import CatalogueConfig, run_catalogue
from ._errors import LoadTestError
from ._report import write_report
from ._resources import ResourceSampler
from ._results import Budget, LoadTestResult, Span, machine_description
from ._roundtrip import RoundTripConfig, run_roundtrip
from ._services import SERVICE_FAULTS, ServicesConfig, ServicesNightHooks, reconcile_services_night, run_services_night
from ._stack import StackAddresses

__all__ = [
    "Budget",
    "CatalogueConfig",
    "LoadTestError",
    "LoadTestResult",
    "ResourceSampler",
    "RoundTripConfig",
    "SERVICE_FAULTS",
    "ServicesConfig",
    "ServicesNightHooks",
    "Span",
    "StackAddresses",
    "machine_description",
    "reconcile_services_night",
    "run_catalogue",
    "run_roundtrip",
    "run_services_night",
    "write_report",
]
