"""The uploads runs start in the add-on's storage, as the control plane keeps them, and the parts granted.

An upload is open until it is completed or aborted; each part granted keeps its SHA-256 and size
for the completion, and is forgotten once its upload ends. The S3 side is control/store.py's.
"""

from __future__ import annotations

import uuid

from psycopg import Connection

from control import runs

_OPEN = "u.completed_at is null and u.aborted_at is null"


def count(conn: Connection, run_id) -> int:
    """How many uploads the run has started."""
    return conn.execute("select count(*) as n from storage_uploads where run_id = %s", (run_id,)).fetchone()["n"]


def start(conn: Connection, run_id, key: str, upload_id: str) -> uuid.UUID:
    """Keep an upload S3 has started (``upload_id`` is S3's); its id here."""
    return conn.execute("insert into storage_uploads (id, run_id, key, upload_id) values (%s, %s, %s, %s)"
                        " returning id", (uuid.uuid4(), run_id, key, upload_id)).fetchone()["id"]


def get(conn: Connection, run_id, upload) -> dict | None:
    """The run's upload ``upload``, open or ended."""
    return conn.execute("select * from storage_uploads where id = %s and run_id = %s", (upload, run_id)).fetchone()


def grant_part(conn: Connection, upload, number: int, sha256: str, size: int) -> None:
    """Keep what part ``number`` was granted for; a part granted again keeps the last grant."""
    conn.execute("insert into storage_parts (upload, number, sha256, size) values (%s, %s, %s, %s)"
                 " on conflict (upload, number) do update set sha256 = excluded.sha256, size = excluded.size",
                 (upload, number, sha256, size))


def granted(conn: Connection, upload) -> list[tuple[int, str, int]]:
    """The parts granted for ``upload``: (number, SHA-256, size), in order."""
    rows = conn.execute("select number, sha256, size from storage_parts where upload = %s order by number",
                        (upload,)).fetchall()
    return [(row["number"], row["sha256"], row["size"]) for row in rows]


def end(conn: Connection, upload, *, completed: bool) -> None:
    """Mark ``upload`` completed or aborted, and forget its parts."""
    column = "completed_at" if completed else "aborted_at"
    conn.execute(f"update storage_uploads set {column} = now() where id = %s", (upload,))
    conn.execute("delete from storage_parts where upload = %s", (upload,))


def open_besides(conn: Connection, run_id, upload) -> list[dict]:
    """The run's open uploads other than ``upload``: starts tried again after a lost answer."""
    return conn.execute(f"select * from storage_uploads u where u.run_id = %s and u.id <> %s and {_OPEN}",
                        (run_id, upload)).fetchall()


def open_of_ended_runs(conn: Connection, *, limit: int) -> list[dict]:
    """Uploads that runs which have ended left open, each with its run's ``resource_id``."""
    return conn.execute(
        f"select u.*, r.resource_id from storage_uploads u join runs r on r.id = u.run_id where {_OPEN}"
        " and r.state = any(%s) limit %s", (list(runs.ENDED), limit)).fetchall()
