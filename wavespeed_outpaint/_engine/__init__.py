"""Tasks on their way: one task (`task`, its inputs in `inputs`), the batch, the shared
poller (`poller` schedules; `estimates`, `windows`), settling lost submits, pacing, the
journal, identities and learned times. Imports `_outputs`, `_api`, `_audio` and the words.
Imported by the client, `_cluster`, `_review` and `_cli`.
"""
