"""nightshift_dev: development tooling of the nightshift source checkout, not part of the library.

Everything here serves people working *on* nightshift (``make demo``, ``make test``,
benchmarks); none of it is imported by ``nightshift`` itself, except lazily by the
``nightshift dev ...`` and ``nightshift demo`` commands.

Modules
-------
devstack
    The local stack of real servers (Apache Kafka, PostgreSQL, S3Proxy, Apicurio
    Registry) started from this checkout's ``deploy/`` and ``.cache/``.
demo
    The main job of ``make demo`` (:func:`~nightshift_dev.demo.run_demo`).
fleet
    :class:`~nightshift_dev.fleet.LocalRunnerFleet`: runner services spawned on this
    machine for the demo, benchmarks and tests (production fleets come from their deployment).
cli
    The ``nightshift dev`` group and the ``nightshift demo`` command.
"""

__all__: list[str] = []
