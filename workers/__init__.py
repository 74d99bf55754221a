"""Worker processes: one per task queue (`python -m workers --queue <name>`)."""
