"""The run store: run folders, atomic writes, provenance."""
