"""Unloading costed events from Snowflake as Parquet files per customer bucket (real Snowflake).

`bucket_sql` computes in Snowflake SQL the bucket `pricing_lab.scale.buckets.bucket_of` gives a
customer: the first 8 bytes of the SHA-256 of the UTF-8 id, big-endian, modulo N (SHA2 hashes a
VARCHAR's UTF-8 bytes; the first 16 hex digits read as a base-16 number fit NUMBER(38, 0)).
`unload_statements` writes the costing query's rows under `@stage/prefix/bucket=0042/…` with
`COPY INTO … PARTITION BY` and fetches them with GET.

Not used by `--events snowflake:…` yet: the stand-in (fakesnow 0.12) copies only INTO tables (a
stage target fails its `COPY INTO` transform) and has no GET, so the source fetches the costed
rows as Arrow batches and pricing_lab writes the buckets (docs/scale-out.md, "Usage straight
from the warehouse").
"""

from __future__ import annotations

from pricing_lab.formula.sql_base import quote_identifier, quote_string


def bucket_sql(customer_column: str, buckets: int) -> str:
    """The bucket (0 … buckets − 1) of the customer id in `customer_column`, as NUMBER."""
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    digest = f"SHA2({quote_identifier(customer_column)}, 256)"
    return f"MOD(TO_NUMBER(SUBSTR({digest}, 1, 16), 'XXXXXXXXXXXXXXXX'), {buckets})"


def bucket_folder_sql(customer_column: str, buckets: int) -> str:
    """The bucket's folder name as `scale.buckets.bucket_folder` writes it: `bucket=0042`."""
    number = bucket_sql(customer_column, buckets)
    return f"'bucket=' || LPAD(TO_VARCHAR({number}), 4, '0')"


def unload_statements(
    query: str, *, stage: str, prefix: str, buckets: int, local_folder: str
) -> tuple[str, str]:
    """`COPY INTO` unloading `query`'s rows as Parquet under `@stage/prefix/bucket=NNNN/`, then
    the `GET` fetching them into `local_folder` (events without a customer go to Snowflake's
    NULL partition)."""
    location = f"@{stage}/{prefix.strip('/')}/"
    copy = (
        f"COPY INTO {location} FROM ({query}) "
        f"PARTITION BY ({bucket_folder_sql('customer_id', buckets)}) "
        "FILE_FORMAT = (TYPE = PARQUET) HEADER = TRUE"
    )
    get = f"GET {location} {quote_string('file://' + local_folder)}"
    return copy, get
