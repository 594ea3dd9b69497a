"""The Parquet-bucket unload statements for real Snowflake (the stand-in cannot unload to a
stage): the bucket expression is the Python bucket rule written in Snowflake functions."""

from __future__ import annotations

import hashlib

from connectors.snowflake.unload import bucket_sql, unload_statements
from pricing_lab.scale.buckets import bucket_of


def test_the_bucket_expression_reads_the_first_16_hex_digits_of_sha2_modulo_n() -> None:
    assert bucket_sql("customer_id", 16) == (
        "MOD(TO_NUMBER(SUBSTR(SHA2(\"customer_id\", 256), 1, 16), 'XXXXXXXXXXXXXXXX'), 16)"
    )
    # What the SQL computes (SHA2 gives lower-case hex of the UTF-8 bytes) is `bucket_of`.
    for customer in ("acme", "bjørn", "顧客-42", ""):
        hex_digest = hashlib.sha256(customer.encode("utf-8")).hexdigest()
        assert int(hex_digest[:16], 16) % 16 == bucket_of(customer, 16)


def test_the_unload_partitions_parquet_files_by_bucket_folder_and_gets_them() -> None:
    copy, get = unload_statements(
        "SELECT 1", stage="PRICING_STAGE", prefix="run-7/", buckets=3, local_folder="/tmp/b"
    )
    assert copy.startswith("COPY INTO @PRICING_STAGE/run-7/ FROM (SELECT 1) PARTITION BY (")
    assert "'bucket=' || LPAD(TO_VARCHAR(MOD(" in copy and ", 3)), 4, '0')" in copy
    assert copy.endswith("FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE")
    assert get == "GET @PRICING_STAGE/run-7/ 'file:///tmp/b'"
