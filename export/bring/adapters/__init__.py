"""The registered source kinds, one module each (imported on the first lookup of ``SOURCES``)."""
