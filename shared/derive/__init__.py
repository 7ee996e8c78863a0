"""What is computed from the stored rows of the days a collection or replay changed: the daily usage
summaries (summaries.py)."""
