"""Usage events (SPEC §4): ingestion with nothing lost, event meters, usage reports, sample data."""
