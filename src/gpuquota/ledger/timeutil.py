"""Timestamps in the ledger are UTC. Naive datetimes are taken as UTC (the webhook and reconciler pass aware ones)."""

from __future__ import annotations

from datetime import UTC, date, datetime


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_day(value: datetime) -> date:
    return utc(value).date()


def iso(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so that SQLite compares timestamps stored as text correctly."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
