"""Adapters that expose blis to external research frameworks (populated by a later issue)."""
