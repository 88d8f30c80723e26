"""The hot paths' queries, compiled to SQL once per database and run with new values.

The ORM builds and compiles a query's SQL on every call: for the one-row look-ups a lecture
hall's joins, sockets and batches of moves make hundreds of times a second, that costs four to
five times what the database takes to answer (0.3-0.4 ms of a process's CPU against 0.08 ms;
bench/RESULTS.md). The queries here are written with the ORM as usual, once, and compiled the
first time they run on a database (per alias and backend: a Django request runs on a thread of
its own, with a connection of its own, so compiling per connection would compile per request);
each call after that only puts its values in place of the placeholders and builds the rows the
ORM would have built (the same converters, so a JSON or a date comes back as the ORM gives it).
Query logging and ``CaptureQueriesContext`` see them as any other query (they go through
Django's cursor).

``Prepared`` takes a function building the query from its arguments (each an ``int``, a ``str``
or a ``datetime`` that the query compares as is) and reads model rows, ``values_list`` rows or
flat values. ``save_fields`` and ``insert`` write one row as ``Model.save()`` would (the same
field preparation; ``insert`` also as an upsert), and ``insert_rows`` many rows with PostgreSQL,
with their statements kept per model, fields and backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, JSONField, Model, QuerySet
from django.db.models.constants import OnConflict
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError

Row = TypeVar("Row")

#: The kinds of value a prepared query takes. A date and time is adapted for the database as
#: the ORM adapts it; an int or a str stands for itself among the SQL's parameters.
KINDS = (int, str, dt.datetime)


def _stand_in(index: int, kind: type, draft: int = 0) -> Any:
    """A value to find where argument ``index`` lands among the query's parameters.

    Each query is compiled with two drafts of stand-ins: a constant of the query that equals a
    stand-in of one draft does not equal the other's, and the two drafts then disagree. An int
    stays within every integer field's range (Django finds out-of-range look-ups empty).
    """
    if kind is int:
        return 29_000 + 100 * draft + index
    if kind is str:
        return f"\x1eprepared argument {index}.{draft}\x1e"
    if kind is dt.datetime:
        return dt.datetime(1901 + draft, 1, 1, 0, 0, index, tzinfo=dt.UTC)
    raise TypeError(f"a prepared query takes int, str or datetime arguments, not {kind.__name__}")


def _adapt(kind: type) -> str | None:
    """The backend operation that puts a value of ``kind`` among the parameters (None: as is)."""
    return "adapt_datetimefield_value" if kind is dt.datetime else None


#: A converter: the name of a backend operation (the calling connection's is used), or a
#: function of a field (a JSON field's ``from_db_value``).
Converter = tuple[str | None, Callable[..., Any] | None]


def _converter(function: Callable[..., Any], connection: BaseDatabaseWrapper) -> Converter:
    # A backend's converter is a method of the connection that compiled the query: it is named,
    # and taken from the connection that runs it (that one may belong to a thread long gone).
    if getattr(function, "__self__", None) is connection.ops:
        return function.__name__, None
    return None, function


def _converted(
    rows: list[Any],
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...],
    connection: BaseDatabaseWrapper,
) -> Iterator[list[Any]]:
    """The rows with each column's database value converted as the ORM converts it."""
    ops = connection.ops
    columns = [
        (position, [function or getattr(ops, str(name)) for name, function in named], expression)
        for position, named, expression in converters
    ]
    for row in rows:
        row = list(row)
        for position, functions, expression in columns:
            value = row[position]
            for function in functions:
                value = function(value, expression, connection)
            row[position] = value
        yield row


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    #: Per parameter: (True, argument index) or (False, a constant of the query).
    slots: tuple[tuple[bool, Any], ...]
    #: Per argument: the backend operation that adapts it for the database (None: as it is).
    adapters: tuple[str | None, ...]
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]
    make: Callable[[str, Any], Any]
    for_update: bool
    model: type[Model]


class Prepared(Generic[Row]):
    """A query compiled once per database; call it with the values of this time.

    ``build`` gets one stand-in value per kind in ``kinds`` (``KINDS``) and returns the QuerySet
    (model rows, ``values_list`` or ``values_list(flat=True)``; no ``select_related``). Each
    argument must reach the SQL unchanged (an exact comparison, not ``icontains`` or a list).
    """

    def __init__(self, build: Callable[..., QuerySet[Any, Any]], *kinds: type) -> None:
        for index, kind in enumerate(kinds):
            _stand_in(index, kind)  # refuses a kind it cannot stand in for
        self._build = build
        self._kinds = kinds
        self._compiled: dict[tuple[str, str], _Compiled] = {}  # (alias, vendor) -> its SQL
        self._lock = threading.Lock()

    def all(self, *values: int | str | dt.datetime, using: str = DEFAULT_DB_ALIAS) -> list[Row]:
        """Run the query with ``values`` (one per kind); its rows as the ORM would give them."""
        if len(values) != len(self._kinds):
            raise TypeError(f"this query takes {len(self._kinds)} values, not {len(values)}")
        connection = connections[using]
        key = (using, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled[key] = self._compile(connection)
        if compiled.for_update and connection.get_autocommit():
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        if any(compiled.adapters):
            values = tuple(
                value if adapt is None else getattr(connection.ops, adapt)(value)
                for value, adapt in zip(values, compiled.adapters, strict=True)
            )
        params = [values[value] if argument else value for argument, value in compiled.slots]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = list(_converted(rows, compiled.converters, connection))
        return [compiled.make(using, row) for row in rows]

    def first(self, *values: int | str | dt.datetime, using: str = DEFAULT_DB_ALIAS) -> Row | None:
        """The first row, or None (the query itself says the order and the limit)."""
        rows = self.all(*values, using=using)
        return rows[0] if rows else None

    def get(self, *values: int | str | dt.datetime, using: str = DEFAULT_DB_ALIAS) -> Row:
        """The first row; the model's ``DoesNotExist`` if there is none, as ``QuerySet.get``."""
        rows = self.all(*values, using=using)
        if not rows:
            model = self._compiled[(using, connections[using].vendor)].model
            missing = model.DoesNotExist  # type: ignore[attr-defined]  # each model's own
            raise missing(f"{model._meta.object_name} matching {values} does not exist")
        return rows[0]

    def _draft(
        self, connection: BaseDatabaseWrapper, draft: int
    ) -> tuple[QuerySet[Any, Any], SQLCompiler, str, tuple[tuple[bool, Any], ...]]:
        """The query built with the stand-ins of ``draft``: its SQL and where each value lands."""
        stand_ins = [_stand_in(index, kind, draft) for index, kind in enumerate(self._kinds)]
        queryset = self._build(*stand_ins)
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        where = {
            (value if adapt is None else getattr(connection.ops, adapt)(value)): index
            for index, (value, adapt) in enumerate(
                zip(stand_ins, (_adapt(kind) for kind in self._kinds), strict=True)
            )
        }
        slots = tuple(
            (True, where[value])
            if not isinstance(value, bool) and _hashable(value) and value in where
            else (False, value)
            for value in params
        )
        missing = set(range(len(stand_ins))) - {value for argument, value in slots if argument}
        if missing:
            raise ValueError(
                f"arguments {sorted(missing)} do not reach the query's SQL unchanged: "
                "compare them exactly (no transform, no list)"
            )
        return queryset, compiler, sql, slots

    def _compile(self, connection: BaseDatabaseWrapper) -> _Compiled:
        queryset, compiler, sql, slots = self._draft(connection, 0)
        _, _, other_sql, other_slots = self._draft(connection, 1)
        if (other_sql, other_slots) != (sql, slots):
            raise ValueError(
                "the query's SQL or its constants change with the arguments' values "
                "(an argument equal to a constant of the query, or one the ORM writes into "
                "the SQL): it cannot be prepared"
            )
        adapters = tuple(_adapt(kind) for kind in self._kinds)
        columns = [column for column, _, _ in compiler.select]
        converters = tuple(
            (position, tuple(_converter(f, connection) for f in functions), expression)
            for position, (functions, expression) in compiler.get_converters(columns).items()
        )
        iterable = queryset._iterable_class
        make: Callable[[str, Any], Any]
        if iterable is ModelIterable:
            info = compiler.klass_info
            if info is None or info.get("related_klass_infos"):
                raise ValueError(
                    "a prepared query of model rows reads one model (no select_related)"
                )
            model: type[Model] = info["model"]
            start, end = info["select_fields"][0], info["select_fields"][-1] + 1
            names = [column.target.attname for column in columns[start:end]]
            annotations = list(compiler.annotation_col_map.items())

            def make(alias: str, row: Any) -> Any:
                instance = model.from_db(alias, names, row[start:end])
                for name, position in annotations:
                    setattr(instance, name, row[position])
                return instance

        elif iterable is FlatValuesListIterable:

            def make(alias: str, row: Any) -> Any:
                return row[0]

        elif iterable is ValuesListIterable:

            def make(alias: str, row: Any) -> Any:
                return tuple(row)

        else:
            raise ValueError(
                f"a prepared query reads rows, values_list or flat values, not {iterable}"
            )
        return _Compiled(
            sql=sql,
            slots=slots,
            adapters=adapters,
            converters=converters,
            make=make,
            # As the ORM: only where the backend locks rows (SQLite locks the whole file).
            for_update=bool(queryset.query.select_for_update)
            and connection.features.has_select_for_update,
            model=queryset.model,
        )


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------------ writing one row

_statements: dict[tuple[Any, ...], tuple[str, tuple[Field[Any, Any], ...]]] = {}
_statements_lock = threading.Lock()


def row_fields(
    model: type[Model], names: Sequence[str] | None = None
) -> tuple[Field[Any, Any], ...]:
    """The fields a write of ``model``'s row sets: ``names``', or every field but the key."""
    meta = model._meta
    if names is None:
        return tuple(f for f in meta.concrete_fields if not f.primary_key)
    return tuple(meta.get_field(name) for name in names)  # type: ignore[misc]


def _statement(
    key: tuple[Any, ...], write: Callable[[], tuple[str, tuple[Field[Any, Any], ...]]]
) -> tuple[str, tuple[Field[Any, Any], ...]]:
    statement = _statements.get(key)
    if statement is None:
        with _statements_lock:
            statement = _statements[key] = write()
    return statement


def save_fields(
    instance: Model,
    fields: Sequence[str] | None = None,
    *,
    missing_ok: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> bool:
    """Write ``fields`` of ``instance``'s row (every field but the key if None), as ``save()``.

    The row must exist (a seat, a game): a row that is gone raises ``DatabaseError`` instead of
    being inserted again, or, with ``missing_ok``, is left alone. Returns whether it was written.
    """
    model = type(instance)
    connection = connections[using]
    quote = connection.ops.quote_name

    def write() -> tuple[str, tuple[Field[Any, Any], ...]]:
        chosen = row_fields(model, fields)
        meta = model._meta
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in chosen)
        where = quote(meta.pk.column)
        return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {where} = %s", chosen

    key = ("update", model, None if fields is None else tuple(fields), connection.vendor)
    sql, chosen = _statement(key, write)
    params = [
        field.get_db_prep_save(field.pre_save(instance, False), connection) for field in chosen
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, instance.pk])
        written: bool = cursor.rowcount == 1
    if not written and not missing_ok:
        raise DatabaseError(f"{model.__name__} {instance.pk} is not in the database")
    return written


def insert(
    instance: Model,
    *,
    unique: Sequence[str] = (),
    update: Sequence[str] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """Insert ``instance`` as a new row and set its key, as ``save()`` does for a new one.

    With ``unique`` and ``update``, a row that already holds the ``unique`` fields' values gets
    the ``update`` fields' instead (``bulk_create(update_conflicts=True)``, in one statement).
    """
    model = type(instance)
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    returning = connection.features.can_return_columns_from_insert
    if bool(unique) != bool(update):
        raise ValueError("an insert that updates on a conflict names both unique and update")

    def write() -> tuple[str, tuple[Field[Any, Any], ...]]:
        chosen = row_fields(model)
        names = ", ".join(quote(field.column) for field in chosen)
        marks = ", ".join(["%s"] * len(chosen))
        sql = f"INSERT INTO {quote(meta.db_table)} ({names}) VALUES ({marks})"
        if unique:
            sql += " " + connection.ops.on_conflict_suffix_sql(
                chosen,
                OnConflict.UPDATE,
                [meta.get_field(name).column for name in update],  # type: ignore[union-attr]
                [meta.get_field(name).column for name in unique],  # type: ignore[union-attr]
            )
        if returning:
            sql += f" RETURNING {quote(pk.column)}"
        return sql, chosen

    if instance.pk is not None:
        raise ValueError(f"{model.__name__} {instance.pk} is already saved")
    key = ("insert", model, tuple(unique), tuple(update), connection.vendor)
    sql, chosen = _statement(key, write)
    params = [
        field.get_db_prep_save(field.pre_save(instance, True), connection) for field in chosen
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            made = cursor.fetchone()[0]
        else:
            made = connection.ops.last_insert_id(cursor, meta.db_table, pk.column)
    took_keys([instance], [(made,)], using=using)


def insert_rows(instances: Sequence[Model], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert ``instances`` (new rows of one model, in order) with PostgreSQL; set their keys.

    One statement with ONE parameter, whatever their number: a JSON array of their rows (each
    an array of its fields' values), which the statement takes apart with the columns' types,
    in order (``WITH ORDINALITY``), returning the new keys in that order as ``bulk_create``
    does. A value goes in as the instance holds it (an int, a text, None, an aware datetime);
    a JSON field's as the text Django writes for it with the field's encoder, so a NaN is
    refused by the database as before. A text is taken as text, so its column checks its
    length (a cast to ``varchar(n)`` would cut it).

    Why: Django binds a statement's values on the client side, and an array per column made
    the driver quote every element, about 20 us a row (2.8 ms for 100 moves against 1.1 ms
    this way, ``orjson`` writing the document).
    """
    if not instances:
        return
    model = type(instances[0])
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise ValueError("insert_rows writes to PostgreSQL (jsonb_array_elements)")
    quote = connection.ops.quote_name
    meta = model._meta
    pk = meta.pk
    assert pk is not None

    def write() -> tuple[str, tuple[Field[Any, Any], ...]]:
        chosen = row_fields(model)
        taken = []
        for index, field in enumerate(chosen):
            kind = field.db_type(connection) or "text"
            if isinstance(field, JSONField):
                kind = "jsonb"
            elif kind.startswith("varchar"):
                kind = "text"  # no cast to varchar(n), which would cut a long text
            taken.append(f"(batch.entry ->> {index})::{kind}")
        names = ", ".join(quote(field.column) for field in chosen)
        return (
            f"INSERT INTO {quote(meta.db_table)} ({names}) SELECT {', '.join(taken)} "
            "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS batch (entry, n) "
            f"ORDER BY batch.n RETURNING {quote(pk.column)}"
        ), chosen

    sql, chosen = _statement(("insert rows", model, connection.vendor), write)

    def value(instance: Model, field: Field[Any, Any]) -> Any:
        held = getattr(instance, field.attname)
        return json.dumps(held, cls=field.encoder) if isinstance(field, JSONField) else held

    rows = [[value(instance, field) for field in chosen] for instance in instances]
    with connection.cursor() as cursor:
        cursor.execute(sql, [orjson.dumps(rows).decode()])
        took_keys(instances, cursor.fetchall(), using=using)


def took_keys(
    instances: Sequence[Model], keys: Sequence[tuple[Any]], *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Give each new row's instance the key the database returned for it, as saved."""
    for instance, (key,) in zip(instances, keys, strict=True):
        instance.pk = key
        instance._state.adding = False
        instance._state.db = using


@dataclass(slots=True)
class QueryCount:
    """How many statements ran on a connection (``counting_queries``)."""

    count: int = 0


@contextlib.contextmanager
def counting_queries(using: str = DEFAULT_DB_ALIAS) -> Iterator[QueryCount]:
    """Count the statements this thread's connection runs inside the block (through Django's
    ``execute_wrapper``: every query, prepared or built by the ORM)."""
    counted = QueryCount()

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        counted.count += 1
        return execute(sql, params, many, context)

    with connections[using].execute_wrapper(count):
        yield counted
