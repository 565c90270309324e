"""A pytest plugin (registered with the package): the emulator as a fixture.

    def test_my_backend(outpaint_emulator):
        client = OutpaintClient(outpaint_emulator.api_key, outpaint_emulator.base_url)
        ...

    @pytest.fixture
    def outpaint_emulator_config():          # optional: how the service behaves
        return EmulatorConfig(time_scale=0.001, faults=Faults({"submit_429": 0.2}))

Nothing is imported, and nothing runs, until a test asks for `outpaint_emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import EmulatorConfig
    from .testing import RunningEmulator


@pytest.fixture
def outpaint_emulator_config() -> EmulatorConfig:
    """How the emulated service behaves: quick tasks (a few milliseconds), no faults.
    Override this fixture to change it."""
    from .emulator import EmulatorConfig

    return EmulatorConfig(time_scale=0.001, base_seconds=0.002, jitter=0.0)


@pytest.fixture
def outpaint_emulator(outpaint_emulator_config: EmulatorConfig) -> Iterator[RunningEmulator]:
    """The emulator on a loopback port for one test, in a thread of its own (sync and
    async tests alike): `.base_url`, `.api_key`, `.config`, `.stats()`."""
    from .testing import running_emulator

    with running_emulator(outpaint_emulator_config) as service:
        yield service
