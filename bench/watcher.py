"""One MariaDB connection that reads how far the worker got, cheaply."""

from __future__ import annotations

import pymysql

from bench.stores import Stores


class Watcher:
    def __init__(self, stores: Stores) -> None:
        self.conn = stores.sql()
        self.cur = self.conn.cursor()

    def close(self) -> None:
        self.conn.close()

    def _one(self, query: str) -> int:
        try:
            self.cur.execute(query)
        except pymysql.err.ProgrammingError:  # the worker has not created the table yet
            return 0
        row = self.cur.fetchone()
        return int(row[0] or 0) if row else 0

    def max_id(self) -> int:
        return self._one("SELECT MAX(id) FROM votes")

    def committed(self) -> int:
        """Votes committed, exactly: the ledger row is in the same transaction as its votes."""
        return self._one("SELECT SUM(votes) FROM vote_batches")

    def batches(self) -> int:
        return self._one("SELECT COUNT(*) FROM vote_batches")

    def new_rows(self, above: int) -> list[tuple[int, str]]:
        try:
            self.cur.execute("SELECT id, voter_id FROM votes WHERE id > %s", (above,))
        except pymysql.err.ProgrammingError:
            return []
        return list(self.cur.fetchall())
