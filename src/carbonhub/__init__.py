"""carbonhub: an open carbon-market platform (registry, exchange, settlement, MRV, inclusion, finance)."""

__version__ = "0.1.0"
