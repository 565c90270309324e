"""The command line through its real entry point, in a subprocess, against the emulator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from conftest import CLEAN_ENV, RATE, MakeTrack, against, run_cli
from support.processes import emulator_process_at, stats

from wavespeed_outpaint._audio.tags import read_tags


@pytest.fixture
def library(make_audio: MakeTrack, tmp_path: Path) -> Path:
    """A folder of tracks with nested paths and all three formats."""
    for name in ("rock/one.wav", "rock/live/two.mp3", "jazz/three.flac", "four.wav"):
        make_audio(f"library/{name}", seconds=0.5)
    return tmp_path / "library"


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    """An emulator process whose tasks take about a second each."""
    with emulator_process_at(time_scale=0.2) as url:
        yield url


def library_run(library: Path, *more: str) -> list[str]:
    """The arguments of `wavespeed-outpaint run LIBRARY --out out --tags x MORE`."""
    return ["run", str(library), "--out", "out", "--tags", "x", *more]


def run_command(library: Path, url: str, *more: str) -> list[str]:
    """The whole command line of `library_run`, against the emulator at `url`."""
    return [sys.executable, "-m", "wavespeed_outpaint", *library_run(library, *more, *against(url))]


def started(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args, cwd=cwd, env=CLEAN_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_folder_lands_at_mirrored_paths(library: Path, tmp_path: Path) -> None:
    done = run_cli(
        "run",
        str(library),
        "--out",
        "out",
        "--tags",
        "lofi",
        "--after",
        "2",
        "--emulator",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["total"], doc["completed"], doc["failed"], doc["unknown"]) == (4, 4, 0, 0)
    assert doc["generated_seconds"] == 8
    assert doc["cost_usd"] == pytest.approx(8 * 0.0002)
    assert {"input", "status", "prediction_id", "files", "error"} <= set(doc["items"][0])
    for name in ("rock/one", "rock/live/two", "jazz/three", "four"):
        # Each output in its input's format (--format same, the command line's default).
        source = next(library.glob(f"{name}.*"))
        output = tmp_path / "out" / f"{name}{source.suffix}"
        # (An MP3's length is known to one MPEG frame.)
        slack = 1152 if source.suffix == ".mp3" else 0
        assert abs(sf.info(output).frames - (sf.info(source).frames + 2 * RATE)) <= slack


def test_a_manifest_gives_each_request_its_fields(make_audio: MakeTrack, tmp_path: Path) -> None:
    make_audio("a.wav", seconds=0.5)
    make_audio("b.flac", seconds=0.5)
    lines = [
        {"audio": "a.wav", "tags": "lofi", "extend_after_duration": 1, "output": "first"},
        {
            "audio": "b.flac",
            "tags": "jazz",
            "extend_before_duration": 2,
            "extend_after_duration": 0,
            "seed": 7,
            "output_format": "ogg",
        },
    ]
    (tmp_path / "jobs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    done = run_cli(
        "run", "--manifest", "jobs.jsonl", "--out", "out", "--emulator", "--json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert sf.info(tmp_path / "out" / "first.wav").frames == round(1.5 * RATE)
    assert sf.info(tmp_path / "out" / "b.ogg").frames == round(2.5 * RATE)


def test_a_bad_manifest_line_is_named_and_nothing_runs(
    make_audio: MakeTrack, tmp_path: Path
) -> None:
    make_audio("a.wav")
    (tmp_path / "jobs.jsonl").write_text(
        '{"audio": "a.wav", "tags": "x"}\n{"audio": "a.wav", "tags": "x", "seed": "7"}\n'
        '{"audio": "a.wav", "tag": "x"}\n'
    )
    done = run_cli("run", "--manifest", "jobs.jsonl", "--out", "out", "--emulator", cwd=tmp_path)
    assert done.returncode == 2
    assert "jobs.jsonl:2: seed='7'" in done.stderr
    assert "jobs.jsonl:3: unknown field tag" in done.stderr
    assert not (tmp_path / "out").exists()


def test_invalid_inputs_are_refused_before_anything_is_sent(library: Path, tmp_path: Path) -> None:
    (library / "notes.mp3").write_text("not audio")
    done = run_cli(
        "run",
        str(library),
        "missing.wav",
        "--out",
        "out",
        "--tags",
        "x",
        "--emulator",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "notes.mp3: the content is not MP3, WAV or FLAC" in done.stderr
    assert "missing.wav: no such file or folder" in done.stderr
    bad = run_cli(
        "run",
        str(library / "four.wav"),
        "--out",
        "o",
        "--tags",
        "x",
        "--after",
        "300",
        "--emulator",
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "must be from 0 to 240" in bad.stderr


def test_no_key_names_the_variable_and_the_emulator(library: Path, tmp_path: Path) -> None:
    done = run_cli(*library_run(library), cwd=tmp_path)
    assert done.returncode == 2
    assert "WAVESPEED_API_KEY" in done.stderr
    assert "--emulator" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_key_is_one_clear_line(library: Path, tmp_path: Path, slow_emulator: str) -> None:
    done = run_cli(
        *library_run(library),
        *against(slow_emulator, "wrong-key"),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "refused the API key" in done.stderr
    assert "wrong-key" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_dry_run_submits_nothing(library: Path, tmp_path: Path, slow_emulator: str) -> None:
    done = run_cli(
        *library_run(library),
        *against(slow_emulator),
        "--dry-run",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "4 tasks, 120 s to generate; estimated cost $0.0240" in done.stdout
    assert "dry run" in done.stdout
    counters = stats(slow_emulator)
    assert counters["submit_requests"] == 0
    assert counters["upload_requests"] == 0


def test_max_cost_holds_back_what_the_budget_cannot_pay(library: Path, tmp_path: Path) -> None:
    # Each task: 30 s = $0.006; $0.013 pays for two.
    done = run_cli(
        *library_run(library),
        "--max-cost",
        "0.013",
        "--emulator",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr  # not 0: the batch is not finished
    doc = json.loads(done.stdout)
    assert (doc["completed"], doc["held_back"], doc["total"]) == (2, 2, 4)
    assert doc["cost_usd"] <= 0.013
    # The whole batch's cost first, then what the cap lets through.
    whole = done.stderr.index("4 tasks, 120 s to generate; estimated cost $0.0240")
    capped = done.stderr.index(
        "--max-cost $0.0130 lets 2 tasks through ($0.0120) and holds back 2 ($0.0120)"
    )
    assert whole < capped


def test_a_balance_that_cannot_pay_refuses_to_start(library: Path, tmp_path: Path) -> None:
    with emulator_process_at(time_scale=0.01, balance=0.01) as url:
        done = run_cli(
            *library_run(library),
            *against(url),
            cwd=tmp_path,
        )
        assert done.returncode == 2
        assert "cannot pay" in done.stderr
        assert stats(url)["submit_requests"] == 0
        capped = run_cli(
            *library_run(library),
            *against(url),
            "--max-cost",
            "0.007",
            cwd=tmp_path,
        )
        assert capped.returncode == 3, capped.stderr  # 3 of 4 held back
        assert stats(url)["tasks_created"] == 1


@pytest.mark.slow
def test_ctrl_c_shuts_down_cleanly_and_the_same_command_resumes(
    library: Path, tmp_path: Path, slow_emulator: str
) -> None:
    args = run_command(library, slow_emulator)
    proc = started(args, tmp_path)
    assert proc.stdout is not None
    # Bounded: a child that dies (readline gives "") or hangs fails the test, never spins.
    deadline = time.monotonic() + 60
    while "account balance" not in (line := proc.stdout.readline()):
        if not line or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached its balance check: {proc.communicate()[1]}")
    time.sleep(1.0)  # submitted, not finished: tasks take several seconds here
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert not list((tmp_path / "out").rglob("*.part"))
    again = run_cli(*args[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    counters = stats(slow_emulator)
    assert counters["duplicate_submissions"] == 0
    assert counters["tasks_created"] == 4
    status = run_cli("status", "--journal", "out/.outpaint-journal.sqlite", cwd=tmp_path)
    assert status.returncode == 0
    assert "downloaded  4" in status.stdout
    assert "cost so far: $0.0240" in status.stdout


def test_status_lists_failures_with_their_errors(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        "https://nowhere.invalid/song.mp3",
        "--out",
        "out",
        "--tags",
        "x",
        "--emulator",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    status = run_cli("status", "--journal", "out/.outpaint-journal.sqlite", cwd=tmp_path)
    assert "failed      1" in status.stdout
    assert "media access failed" in status.stdout


def test_the_demo_writes_whole_extended_tracks(tmp_path: Path) -> None:
    done = run_cli("demo", "--out", "demo-out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Each output in its input's format, with its tags, and 2 s before and 4 s after.
    outputs = sorted(p.name for p in (tmp_path / "demo-out").iterdir() if p.suffix != ".html")
    assert outputs == ["ballad.flac", "chiptune.mp3", "groove.wav"]
    assert round(sf.info(tmp_path / "demo-out" / "groove.wav").duration, 3) == 12.0
    for name, title in (("ballad.flac", "Ballad"), ("chiptune.mp3", "Chiptune")):
        tags = read_tags(tmp_path / "demo-out" / name)
        assert tags.fields["title"] == [f"{title} (extended)"]
        assert tags.fields["album"] == ["Extended"]
        assert tags.cover is not None
    assert "costs $0.0036" in done.stdout
    assert "embedded emulator" in done.stdout


def test_the_emulator_refuses_an_unknown_fault_kind(tmp_path: Path) -> None:
    done = run_cli("emulator", "--fault", "gremlins=0.5", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown fault kind 'gremlins'" in done.stderr


def test_the_demo_with_numpy_missing_says_what_to_install(tmp_path: Path) -> None:
    # numpy made unimportable, as in an install without the audio extra.
    code = (
        "import sys; sys.modules['numpy'] = None; "
        "from wavespeed_outpaint._cli.main import main; sys.exit(main(['demo']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=CLEAN_ENV,
    )
    assert done.returncode == 2
    assert "pip install 'wavespeed-outpaint[audio]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_a_key_the_demo_runs_on_the_service_it_names(tmp_path: Path) -> None:
    with emulator_process_at(time_scale=0.01) as url:
        env = {**CLEAN_ENV, "WAVESPEED_API_KEY": "emulator-key", "WAVESPEED_BASE_URL": url}
        done = subprocess.run(
            [sys.executable, "-m", "wavespeed_outpaint", "demo", "--out", "o"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        counters = stats(url)
    assert done.returncode == 0, done.stderr
    assert f"running on {url}" in done.stdout
    assert counters["tasks_created"] == 3
    assert {p.suffix for p in (tmp_path / "o").iterdir()} >= {".wav", ".flac", ".mp3"}


@pytest.mark.slow
def test_two_runs_on_one_journal_never_both_submit(
    library: Path, tmp_path: Path, slow_emulator: str
) -> None:
    # An overlapping cron job, a second terminal: the same command twice at once.
    args = run_command(library, slow_emulator, "--json")
    runs = [started(args, tmp_path) for _ in range(2)]
    outcomes = [(proc.wait(timeout=120), *proc.communicate()) for proc in runs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], [err for _, _, err in outcomes]
    refused = next(err for code, _, err in outcomes if code == 2)
    assert "is in use by process" in refused
    counters = stats(slow_emulator)
    assert counters["tasks_created"] == 4
    assert counters["duplicate_submissions"] == 0


@pytest.mark.slow
def test_a_lost_journal_beside_marked_outputs_pays_for_none_of_them(
    library: Path, tmp_path: Path
) -> None:
    with emulator_process_at(time_scale=0.02) as url:
        args = library_run(library, "--json", *against(url))
        first = run_cli(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        journal = tmp_path / "out" / ".outpaint-journal.sqlite"
        for lose in ("deleted", "emptied"):
            if lose == "deleted":
                journal.unlink()
            else:
                journal.write_bytes(b"")
            again = run_cli(*args, cwd=tmp_path)
            assert again.returncode == 0, again.stderr
            doc = json.loads(again.stdout)
            assert doc["completed"] == doc["skipped"] == 4  # known by the outputs' marks
            assert {item["delivered_by"] for item in doc["items"]} == {"output"}
        assert stats(url)["tasks_created"] == 4  # nothing was paid for twice

        # Outputs that say nothing of their task (an older version's, or copied by a
        # tool that drops extended attributes): the run cannot tell, so it refuses.
        for output in (tmp_path / "out").rglob("*.wav"):
            data = output.read_bytes()
            output.unlink()
            output.write_bytes(data)
        journal.unlink()
        refused = run_cli(*args, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "carry no task mark" in refused.stderr
        assert "--new-journal" in refused.stderr
        assert stats(url)["tasks_created"] == 4
        fresh = run_cli(*args, "--new-journal", cwd=tmp_path)
        assert fresh.returncode == 0, fresh.stderr


def test_a_manifest_that_is_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_bytes(b'{"audio": "caf\xe9.wav", "tags": "x"}\n')
    done = run_cli("run", "--manifest", "jobs.jsonl", "--out", "out", "--emulator", cwd=tmp_path)
    assert done.returncode == 2
    assert "not UTF-8 text" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_damaged_journal_is_one_clear_line(library: Path, tmp_path: Path) -> None:
    args = library_run(library, "--emulator")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    journal = tmp_path / "out" / ".outpaint-journal.sqlite"
    data = bytearray(journal.read_bytes())
    data[4096:8192] = b"\xa5" * 4096  # the table's page: junk
    journal.write_bytes(bytes(data))
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "cannot be read or written (database disk image is malformed)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_quiet_prints_no_retry_notices(library: Path, tmp_path: Path) -> None:
    from wavespeed_outpaint.emulator._process import emulator_process as spawn_emulator

    with spawn_emulator("--time-scale", "0.01", "--fault", "result_5xx=0.5", "--seed", "3") as url:
        done = run_cli(
            *library_run(library),
            "--quiet",
            *against(url),
            cwd=tmp_path,
        )
        retried = stats(url)["faults_injected"]
    assert done.returncode == 0, done.stderr
    assert isinstance(retried, dict)
    assert retried.get("result_5xx", 0) > 0  # there were retries to announce
    assert done.stderr == ""


def test_the_summary_reads_whole_at_80_columns() -> None:
    import io

    from wavespeed_outpaint._cli.report import print_table

    doc = {
        "total": 12,
        "completed": 2,
        "failed": 0,
        "unknown": 0,
        "skipped": 0,
        "held_back": 10,
        "format_kept": 1,
        "generated_seconds": 60.0,
        "cost_usd": 0.012,
        "items": [],
        "left_out": ["library/" + "a" * 90 + ".wav: not audio this project can read"],
        "sent_by_another_run": 3,
    }
    out = io.StringIO()
    print_table(doc, out)  # not a terminal: rich lays it out at 80 columns
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    for words in (
        "completed",
        "held back (--max-cost)",
        "service's format",
        "$0.0120",
        "another run",
    ):
        assert words in text
    assert "…" not in text


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--out", "OUT"], "give --out s3://bucket/prefix/"),
        (["--out", "s3://b/x/", "--emulator"], "cannot use the embedded emulator"),
        (["--out", "s3://b/x/", "--report", "r.html"], "write the result rows with --json"),
    ],
)
def test_the_command_line_refuses_a_ray_run_it_cannot_do_before_sending(
    flags: list[str],
    says: str,
    make_audio: MakeTrack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from wavespeed_outpaint._cli.main import main

    track = make_audio("t.wav", seconds=0.5)
    flags = [str(tmp_path / "out") if f == "OUT" else f for f in flags]
    code = main(["run", str(track), "--tags", "lofi", "--ray", "auto", *flags])
    assert code == 2
    assert says in capsys.readouterr().err


def test_the_command_line_will_not_send_local_files_to_a_cluster(
    make_audio: MakeTrack, capsys: pytest.CaptureFixture[str]
) -> None:
    from wavespeed_outpaint._cli.main import main

    track = make_audio("t.wav", seconds=0.5)
    args = ["run", str(track), "--tags", "lofi", "--out", "s3://b/x/", "--ray", "auto"]
    code = main([*args, "--api-key", "k", "--base-url", "http://127.0.0.1:9"])
    assert code == 2
    assert "workers on other nodes cannot read" in capsys.readouterr().err


def test_skip_bad_inputs_runs_the_rest_and_lists_what_was_left_out(
    library: Path, tmp_path: Path
) -> None:
    # One file in a library of many is not audio: the whole run was refused, and a bulk
    # user had to find and remove it first. (Without the flag it still is: exit 2.)
    (library / "notes.wav").write_text("not audio at all")
    refused = run_cli(*library_run(library), "--emulator", cwd=tmp_path)
    assert refused.returncode == 2
    done = run_cli(*library_run(library), "--emulator", "--json", "--skip-bad-inputs", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # not everything asked for was done
    doc = json.loads(done.stdout)
    assert (doc["completed"], doc["total"]) == (4, 4)
    (left,) = doc["left_out"]
    assert "notes.wav" in left
    assert "not MP3, WAV or FLAC" in left
    assert "left out (--skip-bad-inputs)" in done.stderr
