"""Activities: the only code that touches storage, LLMs and search."""
