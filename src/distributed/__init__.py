"""Helpers for multi-process launches that do not need MindSpore (rank tables)."""
