"""Metadata extractors: one module each, with ``avus(zone, item, target, host) -> list[iRODSMeta]``."""
