"""Helpers the tests import (ports, the PostgreSQL connection, in-process workers); the fixtures
stay in tests/conftest.py, which uses these too."""
