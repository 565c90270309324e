"""The `wavespeed-outpaint` command line: planning, `run` (local or `--ray`), progress,
the report, `status`, the demo. Imports anything in the package; nothing imports it but
`__main__` and the console script.
"""
