"""`with resource:` closes it: one definition for every class that holds a connection,
a consumer or a file (logs, consumers, clients, the audit index)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Leaving because of an error: that error is the one to report. A close that fails
        # too (often for the same reason: a full disk, a read-only file, a broker gone)
        # must not replace it, as it would by raising here; it is kept as a note.
        try:
            self.close()
        except Exception as secondary:
            exc.add_note(f"closing {type(self).__name__} also failed: {secondary!r}")
