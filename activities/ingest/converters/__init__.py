"""One converter per document format (bytes -> ParsedDocument); activities/ingest/parsing.py picks one."""
