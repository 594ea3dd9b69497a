"""Charts and the self-contained HTML report of replays and scenario comparisons."""
