"""The design the service replaces, kept only as a benchmark baseline: FastAPI with a SQLAlchemy
async session per request, an ORM insert and a commit per request, default JSON, one worker.

Run: DATABASE_URL=postgresql+asyncpg://... uvicorn bench.old_service:app --port 8100
"""

from __future__ import annotations

import os
from datetime import datetime

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import registry

engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10)
Session = async_sessionmaker(engine, expire_on_commit=False)
mapper = registry(metadata=MetaData(schema="staging"))

market_data = Table(
    "market_data",
    mapper.metadata,
    Column("id", Integer, primary_key=True),
    Column("symbol", Text),
    Column("ts", DateTime(timezone=True)),
    Column("open", Numeric),
    Column("high", Numeric),
    Column("low", Numeric),
    Column("close", Numeric),
    Column("volume", BigInteger),
    Column("vwap", Numeric),
)


class MarketData:
    pass


mapper.map_imperatively(MarketData, market_data)


class Record(BaseModel):
    symbol: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float


async def session() -> AsyncSession:
    async with Session() as s:
        yield s


app = FastAPI()


@app.post("/ingest/market-data/")
async def ingest(record: Record, db: AsyncSession = Depends(session)) -> dict[str, str]:  # noqa: B008
    row = MarketData()
    for field, value in record.model_dump().items():
        setattr(row, field, value)
    db.add(row)
    await db.commit()
    return {"status": "success"}
