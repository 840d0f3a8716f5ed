"""Directory completion (issue 14.1): a directory of files is complete when its marker appears or its manifest's
files are all present and settled (``complete_when``, :mod:`irods_ingestd.zoneparts.completion`).

* :mod:`.gate`: the daemon's side: settled files held until their directory is complete, then released.
* :mod:`.manifest`: ``sha256sum``/``md5sum`` manifests read.
* :mod:`.units`: a completed directory's state in Redis (pending, done, its verified files).
* :mod:`.jobs` and :mod:`.check`: the worker's check of a completed directory: its marker ingested last, its
  after-action (the whole directory moved) once all of it is verified.
* :mod:`.dirmove`: the directory move, with the per-file move's care.
* :mod:`.verify`: a copy checked against its manifest's sum.
* :mod:`.completed`: :func:`~.completed.unit_complete`, the one place where a directory is complete and verified.
"""
