"""Credit activity (SPEC §6): a replay's stream, catalog events, sending them as webhooks."""

from pricing_lab.activity.stream import (
    KINDS,
    ActivityOptions,
    activity,
    activity_counts,
    merged_activity,
    replay_activity,
)

__all__ = [
    "KINDS",
    "ActivityOptions",
    "activity",
    "activity_counts",
    "merged_activity",
    "replay_activity",
]
