"""Compliance (MRV): emission reports, verification, allocation, obligations and surrender."""
