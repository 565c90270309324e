"""Audio files as data: recognised and probed, converted between formats, tags carried.
Imports nothing of the package: no network, no tasks, no state.
Imported by the models (to check an input), the API (to name an upload) and the outputs.
"""
