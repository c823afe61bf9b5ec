"""Remora Backup's runner: pg_dump → gpg → storage, and back."""

__version__ = "0.1.0"
