"""dw_ingest: the market-data ingestion service of the data warehouse."""

__version__ = "1.0.0"
