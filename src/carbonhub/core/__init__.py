"""Shared kernel: ids, quantities and money, settings, errors, database, journal, auth."""
