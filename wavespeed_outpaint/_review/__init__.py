"""The review page (under the public `review` module): which extended tracks to listen
to, and the seam scores that say so. Imports `_engine`, `_outputs` and the words.
Imported by `review` and `_cli`.
"""
