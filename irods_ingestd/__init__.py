"""irods-ingestd: watch landing zones and ingest complete files into iRODS."""

__version__ = "0.1.0"
