"""Where outputs go and what they become: local folders (`.part`, marks), buckets (which
also serve inputs), output names, and the finisher (format and tags). Imports `_api`,
`_audio` and the words. Imported by `_engine`, the client and the command line.
"""
