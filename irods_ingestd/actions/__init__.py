"""One small module per command of `irods-ingestd`; each exposes `run(args) -> int` (the exit code)."""
