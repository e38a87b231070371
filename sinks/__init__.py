"""Warehouse sinks: Parquet and SQL landing of the enriched topics, with quality gates."""
