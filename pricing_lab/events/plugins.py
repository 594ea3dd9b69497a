"""Event sources from plug-ins: `--events NAME:SPEC` is read by the source a package registers
under the `pricing_lab.event_sources` entry-point group (`snowflake:DB.SCHEMA.TABLE` by
`connectors.snowflake`). A source is a function of SPEC returning an Arrow table of raw events,
which `events.ingest` then checks like a file's rows; pricing_lab itself imports no connector.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pyarrow as pa

GROUP = "pricing_lab.event_sources"


def plugin_events(text: str) -> pa.Table | None:
    """The events `text` names through a registered source (`NAME:SPEC`), or None when no
    source is registered under NAME (then `text` is a path)."""
    name, colon, spec = text.partition(":")
    if not colon or not name.isidentifier():
        return None
    for entry in entry_points(group=GROUP, name=name):
        read = entry.load()
        table: pa.Table = read(spec)
        return table
    return None
