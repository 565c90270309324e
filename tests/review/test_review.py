"""The review page: what it measures, what it lists, and that it works in a real browser
(headless Chromium, loading the page from the disk as a reviewer would)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import anyio
import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from conftest import MakeTrack, fast_client, fast_config, run_cli, serving
from support.browser import chromium, find_chromium

from wavespeed_outpaint import OutpaintRequest
from wavespeed_outpaint._review.scores import analyse
from wavespeed_outpaint.emulator import Emulator
from wavespeed_outpaint.review import write_review_page

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Loads every player's audio metadata and decodes every picture, as a reviewer's
# scrolling and clicking would; answers what the browser saw.
SEEN = """
(async () => {
  const audios = [...document.querySelectorAll('audio')];
  const heard = await Promise.all(audios.map(a => new Promise(resolve => {
    const done = () => resolve({cls: a.className, src: a.getAttribute('src'),
      duration: a.duration, at: a.currentTime, start: a.dataset.start,
      expected: a.dataset.duration, error: a.error && a.error.code});
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    a.preload = 'metadata';
    a.load();
  })));
  const pictures = await Promise.all([...document.querySelectorAll('img')].map(async i => {
    i.loading = 'eager';
    try { await i.decode(); return i.naturalWidth; } catch (e) { return 0; }
  }));
  const scores = [...document.querySelectorAll('section.track')].map(s => s.dataset.score);
  const failures = [...document.querySelectorAll('.failures summary')].map(s => s.textContent);
  return {heard, pictures, scores, failures};
})()
"""


def wav(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def test_the_seam_score_is_the_jump_in_loudness_and_in_spectrum(tmp_path: Path) -> None:
    rate = 8000
    t = np.arange(6 * rate) / rate
    smooth = 0.2 * np.sin(2 * np.pi * 220 * t)
    # The same tone, 12 dB louder after the seam at 2 s.
    louder = smooth * np.where(t < 2.0, 1.0, 10 ** (12 / 20))
    # A low tone, then a high one from 2 s: the level stays, the spectrum jumps.
    brighter = 0.2 * np.sin(2 * np.pi * np.where(t < 2.0, 220, 1760) * t)
    even = analyse(wav(tmp_path / "even.wav", smooth), before=2, after=0)
    loud = analyse(wav(tmp_path / "loud.wav", louder), before=2, after=0)
    bright = analyse(wav(tmp_path / "bright.wav", brighter), before=2, after=0)
    assert [s.at for s in loud.seams] == [2.0]
    assert even.score < 1.0
    assert loud.seams[0].loudness_jump_db == pytest.approx(12, abs=0.2)
    assert loud.seams[0].spectrum_jump_db < 1.0  # louder, not another sound
    assert bright.seams[0].loudness_jump_db < 0.5
    assert bright.seams[0].spectrum_jump_db > 5
    assert loud.duration == 6.0
    assert len(loud.high) == 160
    assert max(loud.high) == pytest.approx(0.2 * 10 ** (12 / 20), abs=0.01)


@pytest.mark.anyio
async def test_the_review_page_works_in_chromium(make_audio: MakeTrack, tmp_path: Path) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium, and apt-get cannot install it here (not root, or no apt)")
    requests = [
        OutpaintRequest(
            make_audio(name, seconds=seconds),
            tags="lofi",
            extend_before_duration=before,
            extend_after_duration=3,
            output_format="same",
        )
        for name, seconds, before in (
            ("one.wav", 2.0, 1),
            ("two.flac", 1.0, 0),
            ("three.mp3", 1.5, 2),
            ("four'x.wav", 1.0, 1),
        )
    ]
    out = tmp_path / "library out"

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async with (
        serving(gone) as source,
        Emulator(fast_config()) as emu,
        fast_client(emu) as client,
    ):
        failing = OutpaintRequest(f"{source}/gone.wav", tags="x")
        with anyio.fail_after(60):
            results = [r async for r in client.outpaint_many([*requests, failing], out)]
    assert sum(r.ok for r in results) == 4
    page = await write_review_page(out / "review.html", results=results, wall_seconds=3.5)

    with anyio.fail_after(120):
        async with chromium(executable) as browser:
            await browser.open(page.as_uri())
            seen = await browser.evaluate(SEEN)
            ARTIFACTS.mkdir(exist_ok=True)
            await browser.screenshot(ARTIFACTS / "review-page.png")

    heard = seen["heard"]
    # One player for each whole output, one for each seam (the second track has one).
    assert [a["cls"] for a in heard].count("whole") == 4
    assert [a["cls"] for a in heard].count("seam") == 7
    assert [a for a in heard if a["error"] is not None] == []
    durations = {r.files[0].name: sf.info(r.files[0]).duration for r in results if r.ok}
    for audio in heard:
        name = re.sub(r"#.*", "", audio["src"])
        assert audio["duration"] == pytest.approx(durations[unquote(name)], abs=0.05), audio
        if audio["cls"] == "seam":
            assert audio["at"] == pytest.approx(float(audio["start"]), abs=0.05), audio
    assert seen["pictures"] == [seen["pictures"][0]] * 4
    assert seen["pictures"][0] > 0
    scores = [float(s) for s in seen["scores"]]
    assert scores == sorted(scores, reverse=True)
    assert len(seen["failures"]) == 1
    assert seen["failures"][0].startswith("1 ×")


@pytest.mark.slow
def test_the_command_line_writes_the_page_at_the_end_and_from_a_journal(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    for name in ("a.wav", "b.flac"):
        make_audio(f"lib/{name}", seconds=0.5)
    done = run_cli(
        "run",
        "lib",
        "--out",
        "out",
        "--tags",
        "x",
        "--before",
        "1",
        "--after",
        "1",
        "--report",
        "out/review.html",
        "--emulator",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "review page:" in done.stdout
    first = (tmp_path / "out" / "review.html").read_text()
    assert set(re.findall(r"class='whole' controls preload='none' src='([^']+)'", first)) == {
        "a.wav",
        "b.flac",
    }
    again = run_cli("report", "--journal", "out/.outpaint-journal.sqlite", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    second = (tmp_path / "out" / "review.html").read_text()
    assert re.findall(r"data-score='([^']+)'", second) == re.findall(r"data-score='([^']+)'", first)
    missing = run_cli("report", "--journal", "nowhere.sqlite", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no journal at" in missing.stderr


@pytest.mark.anyio
async def test_the_demos_review_page_works_in_chromium(tmp_path: Path) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium, and apt-get cannot install it here (not root, or no apt)")
    done = await anyio.to_thread.run_sync(
        lambda: run_cli("demo", "--out", "demo-out", cwd=tmp_path)
    )
    assert done.returncode == 0, done.stderr
    with anyio.fail_after(120):
        async with chromium(executable) as browser:
            await browser.open((tmp_path / "demo-out" / "review.html").as_uri())
            seen = await browser.evaluate(SEEN)
    heard = seen["heard"]
    assert len(heard) == 3 * 3  # three tracks: the whole, and a seam at each end
    assert [a for a in heard if a["error"] is not None] == []
    assert sorted(round(a["duration"]) for a in heard if a["cls"] == "whole") == [9, 10, 12]
    assert seen["pictures"] == [seen["pictures"][0]] * 3
    assert seen["pictures"][0] > 0
