-- The staging schema of every dw-platform database. The single source: the postgresql role applies
-- it as each database's owner role, and the service's tests apply it to their own cluster.
-- Idempotent: safe to run again on a database that already has it. No roles, no grants here.

CREATE SCHEMA IF NOT EXISTS staging;

CREATE TABLE IF NOT EXISTS staging.market_data (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    symbol      text           NOT NULL,
    ts          timestamptz    NOT NULL,
    -- NUMERIC with an explicit scale: what a client posts is what SQL returns, digit for digit.
    open        numeric(20, 8) NOT NULL,
    high        numeric(20, 8) NOT NULL,
    low         numeric(20, 8) NOT NULL,
    close       numeric(20, 8) NOT NULL,
    volume      bigint         NOT NULL,
    vwap        numeric(20, 8) NOT NULL,
    ingested_at timestamptz    NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT market_data_symbol_ts_key UNIQUE (symbol, ts),
    -- The same rules the API enforces, kept by the database too so no other writer can break them.
    CONSTRAINT market_data_symbol_format CHECK (symbol ~ '^[A-Z0-9./-]{1,16}$'),
    CONSTRAINT market_data_prices_positive CHECK (open > 0 AND high > 0 AND low > 0 AND close > 0 AND vwap > 0),
    CONSTRAINT market_data_ohlc_consistent CHECK (low <= least(open, close) AND greatest(open, close) <= high),
    CONSTRAINT market_data_vwap_in_range CHECK (vwap BETWEEN low AND high),
    CONSTRAINT market_data_volume_non_negative CHECK (volume >= 0)
);

CREATE INDEX IF NOT EXISTS market_data_ts_idx ON staging.market_data (ts);

COMMENT ON TABLE staging.market_data IS 'One OHLCV+VWAP bar per symbol and timestamp, as received by the ingestion API.';
