"""What the pages' templates read: view records whose fields a template looks up fast.

Django's template engine resolves ``{{ lab.value }}`` by trying ``lab["value"]`` first and only
then ``getattr(lab, "value")``. On a plain dataclass that first try raises a TypeError, which
the engine catches, on every lookup. A lab's card makes about 50 lookups, and a lecture hall
renders every lab's card on every event: those failed tries were about a third of a card's
rendering (``bench/RESULTS.md``). ``Record`` answers the first try itself.
"""

from __future__ import annotations

from typing import Any, NoReturn


class Record:
    """A view record (a dataclass) whose attributes templates read as ``record[name]``.

    Any other key (not a name, or a name it has no attribute for) raises KeyError, as a mapping
    does, and the template engine goes on to its other lookups as it did before. Not iterable:
    a record is not a sequence, though it has ``__getitem__``.
    """

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        if isinstance(name, str) and not name.startswith("_"):
            try:
                return getattr(self, name)
            except AttributeError:
                pass
        raise KeyError(name)

    def __iter__(self) -> NoReturn:
        raise TypeError(f"a {type(self).__name__} is a record, not a sequence")
