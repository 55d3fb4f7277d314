"""Plain SQL for the decision path, where the ORM's query building cost more than the queries.

`insert`: `INSERT … VALUES` of model instances, for statements the ORM cannot fuse.

The decision path writes its served ads, its decision and its spend in ONE PostgreSQL statement
(data-modifying CTEs, see decisions.record): three ORM writes cost ~2 ms more per decision than
the fused statement (two extra round trips and the ORM's save path around each insert). Values are prepared
exactly as `bulk_create` prepares them; only the statement text is ours (made once per row count).

`customer_with_persona`: the API's customer lookup (1.2 ms through the ORM's `select_related`,
0.45 ms as a fixed statement), its rows converted by the ORM's own converters into model instances.
`memberships`: which of some audiences a customer is in (read with the customer by the API's lookup).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import cache
from typing import Iterator, Sequence

from django.db import connection, models
from django.db.models import sql

from audiences.models import AudienceMember, Customer, Persona


def insert(objs: Sequence[models.Model]) -> tuple[str, list]:
    """The SQL and parameters inserting these instances (all of one model), for use inside a larger statement.

    `INSERT … VALUES` with each value prepared as `bulk_create` prepares it (`pre_save`, then
    `get_db_prep_save`; only auto-incremented keys left to the database). The statement text is
    made once per model and row count: building it through the ORM's insert compiler on every
    decision cost ~0.2 ms. A value that is an expression, or a field with its own placeholder,
    goes through the ORM's compiler instead.
    """
    model = type(objs[0])
    sql, fields = _insert_statement(model, len(objs))
    if sql is None:
        return _compiled_insert(objs)
    params = []
    for obj in objs:
        for field in fields:
            value = field.pre_save(obj, True)
            if hasattr(value, "resolve_expression"):
                return _compiled_insert(objs)
            params.append(field.get_db_prep_save(value, connection=connection))
    return sql, params


def _insert_fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]


@cache
def _insert_statement(model: type[models.Model], n: int) -> tuple[str | None, list[models.Field]]:
    fields = _insert_fields(model)
    if any(hasattr(f, "get_placeholder") for f in fields):
        return None, fields
    quote = connection.ops.quote_name
    row = f"({', '.join(['%s'] * len(fields))})"
    return (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([row] * n)}"), fields


def _compiled_insert(objs: Sequence[models.Model]) -> tuple[str, list]:
    """`insert` through the ORM's own insert compiler, as `bulk_create` builds it."""
    query = sql.InsertQuery(type(objs[0]))
    query.insert_values(_insert_fields(type(objs[0])), objs)
    [(statement, params)] = query.get_compiler(connection=connection).as_sql()
    return statement, list(params)


@cache
def _customer_query() -> tuple[str, list[str], list[str], object, dict]:
    quote = connection.ops.quote_name
    customer_fields, persona_fields = Customer._meta.concrete_fields, Persona._meta.concrete_fields
    columns = [f"c.{quote(f.column)}" for f in customer_fields] + [f"p.{quote(f.column)}" for f in persona_fields]
    # Every audience the customer is in rides along (route() then needs no query of its own).
    members = f"SELECT m.audience_id FROM {quote(AudienceMember._meta.db_table)} m WHERE m.customer_id = c.{quote(Customer._meta.pk.column)}"
    columns.append(f"ARRAY({members})" if connection.vendor == "postgresql" else f"(SELECT json_group_array(audience_id) FROM ({members}))")
    sql = (f"SELECT {', '.join(columns)} FROM {quote(Customer._meta.db_table)} c "
           f"LEFT JOIN {quote(Persona._meta.db_table)} p ON p.{quote(Persona._meta.pk.column)} = c.{quote(Customer._meta.pk.column)} "
           f"WHERE c.{quote(Customer._meta.get_field('external_id').column)} = %s")
    # Held for the process: the compiler and its converters reach the database through the connection
    # proxy (each thread's own), and converting values runs no query.
    compiler = Customer.objects.none().query.get_compiler(connection=connection)
    converters = compiler.get_converters([f.get_col(Customer._meta.db_table) for f in customer_fields]
                                         + [f.get_col(Persona._meta.db_table) for f in persona_fields])
    return sql, [f.attname for f in customer_fields], [f.attname for f in persona_fields], compiler, converters


def customer_with_persona(external_id: str) -> Customer | None:
    """The customer with this external id, its persona loaded too (or known to be missing), in one statement.

    Also sets `audience_ids`: the audiences the customer is a member of (their last materialised membership).
    """
    sql, customer_names, persona_names, compiler, converters = _customer_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [external_id])
        row = cursor.fetchone()
    if row is None:
        return None
    *row, audience_ids = row
    if connection.vendor != "postgresql":
        audience_ids = json.loads(audience_ids)
    if converters:
        row = next(iter(compiler.apply_converters([row], converters)))
    n = len(customer_names)
    customer = Customer.from_db(connection.alias, customer_names, row[:n])
    persona = None
    if row[n + persona_names.index(Persona._meta.pk.attname)] is not None:
        persona = Persona.from_db(connection.alias, persona_names, row[n:])
        Persona.customer.field.set_cached_value(persona, customer)
    Customer.persona.related.set_cached_value(customer, persona)  # a missing one raises DoesNotExist, as the ORM's would
    customer.audience_ids = frozenset(audience_ids)
    return customer


def memberships(customer: Customer, audience_ids) -> set[int]:
    """Which of these audiences (their last materialised membership) the customer is in.

    No query for a customer from `customer_with_persona`, which read them all.
    """
    known = getattr(customer, "audience_ids", None)
    if known is not None:
        return known & set(audience_ids)
    ids = sorted(audience_ids)
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT audience_id FROM {AudienceMember._meta.db_table} WHERE customer_id = %s "
                       f"AND audience_id IN ({', '.join(['%s'] * len(ids))})", [customer.pk, *ids])
        return {audience_id for (audience_id,) in cursor.fetchall()}


class Ride:
    """A transaction whose BEGIN is sent with its first statement and whose COMMIT with its last (PostgreSQL).

    `atomic()` costs a serving decision two round trips of its own: psycopg sends BEGIN before the
    first statement and waits for it, and COMMIT after the last. On a connection in autocommit mode the
    decision can instead send `BEGIN; <lock>; <history>` as one message and `<writes>; COMMIT` as
    another (the client-side binding cursor sends several statements as one simple query): 4 round
    trips become 2, about 0.35 ms of CPU each under load (bench/decisions.py). Django does not know
    about this transaction, so nothing inside it may enter `atomic()` (psycopg refuses to leave
    autocommit mode inside a transaction, so a mistake fails loudly), and `riding()` ends it with
    ROLLBACK when anything raises — or with its own COMMIT if the last statement did not carry one.
    """

    def __init__(self) -> None:
        self.begun = False

    def begin(self) -> str:
        """The prefix for the transaction's first statement ("BEGIN; ", then "")."""
        if self.begun:
            return ""
        self.begun = True
        return "BEGIN; "

    def commit(self) -> str:
        """The suffix for its last statement."""
        return "; COMMIT"


def can_ride() -> bool:
    """Whether a decision may ride its transaction on its statements: PostgreSQL, autocommit, several statements per execute."""
    return (connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit()
            and not connection.settings_dict["OPTIONS"].get("server_side_binding"))


@contextmanager
def riding() -> Iterator[Ride]:
    ride = Ride()
    try:
        yield ride
    except BaseException:
        if ride.begun:
            _end("ROLLBACK")
        raise
    if ride.begun:
        _end("COMMIT")  # nothing to do when the last statement carried it


def in_transaction() -> bool:
    """Whether the server holds a transaction open on this connection (psycopg's view of it, not Django's)."""
    from psycopg.pq import TransactionStatus

    return connection.connection is not None and connection.connection.info.transaction_status != TransactionStatus.IDLE


def _end(command: str) -> None:
    if not in_transaction():  # never begun (the first statement failed to send), or the COMMIT was sent
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(command)
    except Exception:
        if command == "COMMIT":
            raise
        connection.close()  # a connection that cannot roll back is not used again: the server ends the transaction
