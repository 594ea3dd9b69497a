"""Snowflake connector: key-pair authentication and idempotent export (SPEC §7)."""
