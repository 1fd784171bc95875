"""Adapters for the ports of hodei_core."""
