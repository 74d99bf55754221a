"""Starters: CLI and REST API. They only start, signal, query and schedule workflows."""
