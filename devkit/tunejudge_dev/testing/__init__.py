"""Test doubles shipped with the library (used by tests/ and bench/)."""
