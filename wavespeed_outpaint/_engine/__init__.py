"""Tasks on their way: one task (`task`), the batch, the shared poller, settling lost
submits, pacing, the journal, identities and learned times. Imports `_outputs`, `_api`,
`_audio` and the words. Imported by the client, `_cluster`, `_review` and `_cli`.
"""
