"""The product catalog (SPEC §2): records, validation, YAML format, the versioned DuckDB store."""
