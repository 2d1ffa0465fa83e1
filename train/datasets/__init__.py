"""Loaders for the real datasets that ship inside registry packages (see ``sources.py``)."""
