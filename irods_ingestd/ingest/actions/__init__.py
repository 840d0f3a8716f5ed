"""After-actions: one module each, with ``run(zone, item, path) -> None`` (see :mod:`..after`)."""
