"""Positions of log readers, stored with the writes they cover."""

from __future__ import annotations

import asyncpg


async def lock_checkpoint(conn: asyncpg.Connection, name: str) -> int:
    """The reader's position, row-locked until the transaction ends (one runner at a time)."""
    await conn.execute(
        "INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        name,
    )
    position = await conn.fetchval(
        "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", name
    )
    return int(position)


async def read_checkpoint(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> int:
    position = await conn.fetchval("SELECT position FROM checkpoints WHERE name = $1", name)
    return int(position or 0)


async def save_checkpoint(conn: asyncpg.Connection, name: str, position: int) -> None:
    await conn.execute(
        """
        INSERT INTO checkpoints (name, position, updated_at) VALUES ($1, $2, now())
        ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()
        """,
        name,
        position,
    )


async def first_delivery(conn: asyncpg.Connection, consumer: str, message_id: str) -> bool:
    """Record ``message_id`` as handled by ``consumer``; False if it was handled before.

    Call inside the transaction that does the handling, so both commit or neither does.
    """
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        message_id,
    )
    return bool(inserted)
