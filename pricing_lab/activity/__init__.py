"""Credit activity (SPEC §6): a replay's stream, catalog events, sending them as webhooks."""

from pricing_lab.activity.stream import KINDS, activity, activity_counts, replay_grants

__all__ = ["KINDS", "activity", "activity_counts", "replay_grants"]
