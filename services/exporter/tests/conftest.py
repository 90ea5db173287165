"""Exporter test world: a migrated database, a bucket on the session's moto server, readers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import pytest_asyncio

from fleetpulse.common.aws import AwsConfig, aws_client
from fleetpulse.exporter.exporter import Exporter, ExportOptions
from fleetpulse.exporter.files import Coalescing
from fleetpulse.exporter.lake import S3ObjectStore
from fleetpulse.exporter.store import PostgresExportStore

PARTITIONING = pads.partitioning(
    pa.schema([("tenant_id", pa.string()), ("date", pa.string())]), flavor="hive"
)


class Lake:
    """The bucket as a query engine sees it: every object, as pyarrow/DuckDB read them."""

    def __init__(self, endpoint: str, bucket: str, s3: Any) -> None:
        self.bucket = bucket
        self.s3 = s3
        self._fs = pafs.S3FileSystem(
            endpoint_override=endpoint,
            scheme="http",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
        )

    async def keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def table(self, dataset: str) -> pa.Table:
        source = f"{self.bucket}/{dataset}"
        if self._fs.get_file_info(source).type == pafs.FileType.NotFound:
            return pa.table({})
        data = pads.dataset(
            source, filesystem=self._fs, format="parquet", partitioning=PARTITIONING
        )
        return data.to_table()

    def sql(self, query: str, **tables: pa.Table) -> list[tuple[Any, ...]]:
        """Run ``query`` in DuckDB with each keyword bound as a table name."""
        con = duckdb.connect()
        for name, table in tables.items():
            con.register(name, table)
        return con.execute(query).fetchall()


@pytest_asyncio.fixture
async def lake(aws_config: AwsConfig, moto_server: str) -> AsyncIterator[Lake]:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    async with aws_client("s3", aws_config) as s3:
        await s3.create_bucket(Bucket=bucket)
        yield Lake(moto_server, bucket, s3)


@pytest.fixture
def make_exporter(db_pool: asyncpg.Pool, lake: Lake) -> Any:
    def build(
        rows_per_file: int = 500_000,
        max_events: int = 100_000,
        coalescing: Coalescing | None = None,
    ) -> Exporter:
        store = PostgresExportStore(db_pool, max_events=max_events, coalescing=coalescing)
        options = ExportOptions(rows_per_file=rows_per_file)
        return Exporter(store, S3ObjectStore(lake.s3, lake.bucket), options)

    return build


async def insert_reading(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant: str,
    device: str,
    time: datetime,
    metrics: dict[str, Any],
    seq: int | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO telemetry (time, tenant_id, device_id, seq, metrics) VALUES ($1, $2, $3, $4, $5)",
        time,
        tenant,
        device,
        seq,
        metrics,
    )
