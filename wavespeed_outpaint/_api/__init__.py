"""The service's wire: the transport (retries, error mapping), every endpoint (the list's
paging among them), downloads and webhook signatures. Imports `_audio` and the words
(`errors`, `models`, `options`, `seams`). Imported by `_outputs`, `_engine`, the client.
"""
