"""Control groups: which customers a campaign holds out, the same in Python (decisions) and in SQL (lists).

A campaign with a control share s holds out every customer whose hash fraction h(customer, salt)
is under s. The salt is the campaign's own (random at creation), so each campaign holds out its
own customers, independently of the others; the optional global control group (settings
GLOBAL_CONTROL_SHARE / GLOBAL_CONTROL_SALT) holds customers out of every campaign. The hash is
stable — a customer stays in or out for the campaign's life, so outcomes compare — and is a
small integer mixer (xor, multiply, shift) that PostgreSQL and SQLite compute exactly as
Python does: 64-bit integers only, every product under 2**63, xor spelt (a | b) − (a & b)
because SQLite has no xor operator.
"""

from __future__ import annotations

from django.conf import settings

M32 = 4294967296
K1 = 2246822507  # the murmur3 finaliser's constants; K2 below 2**31 so h × K2 stays under 2**63
K2 = 1500450271


def fraction(customer_id: int, salt: int) -> float:
    """The customer's place in [0, 1) for this salt."""
    h = ((customer_id ^ salt) * K1) % M32
    h = ((h ^ (h >> 13)) * K2) % M32
    return (h ^ (h >> 16)) / M32


def _xor(a: str, b: str) -> str:
    return f"(({a}) | ({b})) - (({a}) & ({b}))"


def sql_fraction(column: str, salt: int) -> str:
    """SQL for `fraction` of the integer `column` (percent signs doubled for a query with parameters)."""
    h1 = f"(({_xor(f'CAST({column} AS BIGINT)', str(int(salt)))}) * {K1}) %% {M32}"
    h2 = f"(({_xor(h1, f'({h1}) >> 13')}) * {K2}) %% {M32}"
    return f"(({_xor(h2, f'({h2}) >> 16')}) / CAST({M32} AS DOUBLE PRECISION))"  # a float, not PostgreSQL's numeric


def held_out(customer_id: int, share: float, salt: int) -> bool:
    return share > 0 and fraction(customer_id, salt) < share


def global_control(customer_id: int) -> bool:
    """In the optional control group of every campaign."""
    return held_out(customer_id, settings.GLOBAL_CONTROL_SHARE, settings.GLOBAL_CONTROL_SALT)


def campaigns_holding_out(customer_id: int, campaigns) -> set[int]:
    """The ids of these campaigns that hold this customer out (all of them when the global control does)."""
    campaigns = list(campaigns)
    if global_control(customer_id):
        return {c.pk for c in campaigns}
    return {c.pk for c in campaigns if held_out(customer_id, c.control_share, c.control_salt)}


def sql_not_held_out(campaign, column: str = "c.id") -> str:
    """SQL true for customers the campaign (and the global control) does not hold out; '' when nothing is held out."""
    parts = []
    if campaign.control_share > 0:
        parts.append(f"{sql_fraction(column, campaign.control_salt)} >= {float(campaign.control_share)}")
    if settings.GLOBAL_CONTROL_SHARE > 0:
        parts.append(f"{sql_fraction(column, settings.GLOBAL_CONTROL_SALT)} >= {float(settings.GLOBAL_CONTROL_SHARE)}")
    return " AND ".join(parts)
