"""Which optional libraries are installed, asked without importing them (numpy alone
takes a tenth of a second). Converting outputs, the review page and the emulator's audio
need the `audio` extra (numpy, soundfile); the command line's live bar and tables, the
`cli` extra (rich). Without them the SDK and the command line's batch run still work.
"""

from __future__ import annotations

import functools
import importlib.util

AUDIO_EXTRA = ("numpy", "soundfile")
CLI_EXTRA = ("rich",)


@functools.cache
def installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)
