"""Store adapters behind one interface each; embedded defaults and production servers."""
