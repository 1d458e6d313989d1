"""The Avro schemas of every nightshift event: ``manifest.json`` and ``events/*.avsc`` (no code).

This top-level folder is the one home of the schemas (DESIGN.md). ``pyproject.toml`` maps it to
the package ``nightshift.events.schemas``, so a built wheel carries the files as package data and
an editable install finds them here; :func:`nightshift.events.schemas_dir` locates them.
"""
