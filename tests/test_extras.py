"""The install without its extras: the SDK and the command line's batch run work, and
what needs an extra says which one before anything is sent.

Each case runs in a Python of its own where the extras' libraries cannot be imported
(`sys.modules[name] = None`, as Python marks a module that is not there), against the
emulator in this process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from conftest import CLEAN_ENV, MakeTrack, against

from wavespeed_outpaint.emulator import DEFAULT_API_KEY, Emulator

pytestmark = pytest.mark.anyio

WITHOUT_EXTRAS = "import sys; sys.modules.update(numpy=None, soundfile=None, rich=None)\n"
INSTALL_AUDIO = "pip install 'wavespeed-outpaint[audio]'"


async def without_extras(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(120):
        done = await anyio.run_process(
            [sys.executable, "-c", WITHOUT_EXTRAS + code], cwd=cwd, env=CLEAN_ENV, check=False
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def cli(*args: str) -> str:
    return f"from wavespeed_outpaint._cli.main import main\nsys.exit(main({list(args)!r}))\n"


async def test_the_sdk_without_extras_runs_in_the_services_format_and_refuses_a_conversion(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    track = make_audio("a.wav")
    code = f"""
import asyncio
from wavespeed_outpaint import MissingExtraError, OutpaintClient, OutpaintRequest

async def main():
    async with OutpaintClient({DEFAULT_API_KEY!r}, {emulator.base_url!r}) as client:
        kept = await client.outpaint(
            OutpaintRequest({str(track)!r}, tags="x", output_format="service"), "kept"
        )
        print("kept", kept.ok, [f.name for f in kept.files])
        for fmt in ("same", "flac"):
            request = OutpaintRequest({str(track)!r}, tags="x", output_format=fmt)
            try:
                await client.outpaint(request, "out")
            except MissingExtraError as exc:
                print("refused:", isinstance(exc, ImportError), exc)
        try:
            requests = [OutpaintRequest({str(track)!r}, tags="y", output_format="same")]
            async for _ in client.outpaint_many(requests, "many"):
                pass
        except MissingExtraError as exc:
            print("batch refused:", exc)

asyncio.run(main())
"""
    done = await without_extras(code, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "kept True ['a.wav']"
    assert (tmp_path / "kept" / "a.wav").is_file()
    assert lines[1].startswith("refused: True output_format='same' (converting the outputs)")
    assert lines[2].startswith("refused: True output_format='flac'")
    assert lines[3].startswith("batch refused: output_format='same'")
    assert all(INSTALL_AUDIO in line for line in lines[1:])
    assert "output_format='service'" in lines[1]
    # Only the task in the service's format was sent, and its input uploaded once.
    assert emulator.stats()["submit_requests"] == 1
    assert not list((tmp_path / "many").glob("*.wav"))


async def test_the_command_line_without_extras_runs_a_batch_and_says_what_to_install(
    emulator: Emulator, make_audio: MakeTrack, tmp_path: Path
) -> None:
    track = make_audio("a.wav")
    to_service = against(emulator.base_url, DEFAULT_API_KEY)
    done = await without_extras(
        cli("run", str(track), "--tags", "x", "--out", "out", "--format", "service", *to_service),
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.wav").is_file()
    # The summary in plain columns (rich draws boxes).
    assert "Summary" in done.stdout
    assert any(line.split()[:2] == ["completed", "1"] for line in done.stdout.splitlines())
    assert "┃" not in done.stdout
    assert "│" not in done.stdout

    for extra_args in (["--format", "same"], ["--format", "service", "--report", "r.html"]):
        refused = await without_extras(
            cli("run", str(track), "--tags", "z", "--out", "o2", *extra_args, *to_service),
            tmp_path,
        )
        assert refused.returncode == 2
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert INSTALL_AUDIO in refused.stderr
        assert "Traceback" not in refused.stderr
    for command in (["demo"], ["report", "--journal", "out/.outpaint-journal.sqlite"]):
        refused = await without_extras(cli(*command), tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert INSTALL_AUDIO in refused.stderr
        assert "Traceback" not in refused.stderr
    assert emulator.stats()["submit_requests"] == 1  # the refused runs sent nothing


async def test_the_emulator_and_the_review_page_name_their_extra(tmp_path: Path) -> None:
    code = """
import asyncio
import wavespeed_outpaint.pytest_plugin, wavespeed_outpaint.testing
from wavespeed_outpaint import MissingExtraError
from wavespeed_outpaint.review import write_review_page
try:
    import wavespeed_outpaint.emulator
except ImportError as exc:
    print("emulator:", type(exc).__name__, exc)
try:
    asyncio.run(write_review_page("page.html", results=[]))
except MissingExtraError as exc:
    print("review:", exc)
"""
    done = await without_extras(code, tmp_path)
    assert done.returncode == 0, done.stderr
    emulator_line, review_line = done.stdout.splitlines()
    assert emulator_line.startswith("emulator: MissingExtraError the emulator")
    assert review_line.startswith("review: the review page")
    assert INSTALL_AUDIO in emulator_line
    assert INSTALL_AUDIO in review_line
    assert not (tmp_path / "page.html").exists()
