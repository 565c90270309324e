"""The batch across processes (under the public `ray` module): the claim store that a
cluster's workers share, and the long-lived batch its callers feed. Imports the client
and everything under it. Imported by `ray` and `_cli`.
"""
