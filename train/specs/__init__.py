"""One module per model spec; each registers itself with ``@register``. Discovered by ``registry.names()``."""
