"""The tamper-evident log: a SHA-256 hash chain over a game's entries, one chain per game.

Each logged entry (a move or an event) stores ``prev_hash``, the hash of the game's entry before
it (empty for the first), and ``hash``, the SHA-256 of a canonical JSON of the entry with that
``prev_hash`` inside. Changing any stored field of an entry changes its hash; deleting or
inserting an entry breaks the next entry's ``prev_hash``. ``verify_chain`` walks a game's log
and names the first entry that does not fit. Games recorded before the chain existed have empty
hashes: they are reported as unchained, never as tampered, and still replay.

Pure functions over plain values: the services call ``entry_hash`` when they log, the replay, the
admin and the bundle replay (which has no database rows) call ``verify_chain``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The name of the hash in bundles and messages.
ALGORITHM = "sha256"


def canonical_time(when: dt.datetime) -> str:
    """Return a time as UTC ISO 8601 with microseconds (the same text in every database)."""
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_document(
    *,
    game: str,
    seat: int | None,
    action: str,
    actor: str,
    round_no: int,
    phase: str,
    payload: Mapping[str, Any],
    latency_ms: int | None,
    time: str,
    prev_hash: str,
) -> dict[str, Any]:
    """Return the JSON document an entry's hash is taken over (every field a replay reads)."""
    return {
        "game": game,
        "seat": seat,
        "action": action,
        "actor": actor,
        "round": round_no,
        "phase": phase,
        "payload": dict(payload),
        "latency_ms": latency_ms,
        "time": time,
        "prev": prev_hash,
    }


def canonical_json(document: Mapping[str, Any]) -> str:
    """Return ``document`` as canonical JSON: sorted keys, no spaces, no NaN."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(document: Mapping[str, Any]) -> str:
    """Return the hex SHA-256 of ``document``'s canonical JSON."""
    return hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainEntry:
    """One logged entry as the chain sees it (from a row or from a bundle)."""

    id: int
    document: dict[str, Any]
    prev_hash: str
    hash: str
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """What walking a game's chain found.

    ``unchained`` counts entries logged before the chain existed (no hash); ``broken_id`` is the
    first entry that does not fit (None when all do) and ``problem`` says how.
    """

    code: str
    entries: int
    unchained: int
    broken_id: int | None
    problem: str
    head: str

    @property
    def ok(self) -> bool:
        return self.broken_id is None

    def summary(self) -> str:
        """One line for a person."""
        if not self.ok:
            return f"Game {self.code}: the log's hash chain is broken: {self.problem}"
        if self.unchained == self.entries:
            return (
                f"Game {self.code}: its {self.entries} log entries were recorded before the "
                "hash chain existed; nothing to verify."
            )
        chained = self.entries - self.unchained
        return (
            f"Game {self.code}: the hash chain of its {chained} log entries holds "
            f"(head {self.head[:12]})."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "unchained": self.unchained,
            "broken_entry": self.broken_id,
            "problem": self.problem,
            "head": self.head,
        }


def verify_chain(code: str, entries: Iterable[ChainEntry]) -> ChainReport:
    """Walk a game's entries (oldest first) and name the first that does not fit the chain.

    An entry fits when its ``prev_hash`` is the previous entry's ``hash`` and its ``hash`` is the
    hash of its own document. Entries without a hash are accepted only before the first hashed
    one (a game recorded before the chain existed, or partly so).
    """
    previous = ""
    count = 0
    unchained = 0
    for entry in entries:
        count += 1
        if not entry.hash:
            if previous:
                return ChainReport(
                    code=code,
                    entries=count,
                    unchained=unchained,
                    broken_id=entry.id,
                    problem=f"entry {entry.id} ({entry.label}) has lost its hash.",
                    head=previous,
                )
            unchained += 1
            continue
        if entry.prev_hash != previous:
            return ChainReport(
                code=code,
                entries=count,
                unchained=unchained,
                broken_id=entry.id,
                problem=(
                    f"entry {entry.id} ({entry.label}) does not follow the entry before it: "
                    "an entry was removed or inserted there."
                ),
                head=previous,
            )
        if entry_hash(entry.document) != entry.hash:
            return ChainReport(
                code=code,
                entries=count,
                unchained=unchained,
                broken_id=entry.id,
                problem=f"entry {entry.id} ({entry.label}) was changed after it was logged.",
                head=previous,
            )
        previous = entry.hash
    return ChainReport(
        code=code, entries=count, unchained=unchained, broken_id=None, problem="", head=previous
    )
