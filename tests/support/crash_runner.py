"""A batch run in its own process, for the crash tests: killed and started again.

usage: python crash_runner.py BASE_URL JOURNAL OUT_DIR INPUT_DIR
Prints one line per result: "<status> <ok> <skipped> <files>".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from wavespeed_outpaint import OutpaintClient, OutpaintRequest
from wavespeed_outpaint.emulator import DEFAULT_API_KEY


async def main(base_url: str, journal: str, out_dir: str, input_dir: str) -> None:
    inputs = sorted(Path(input_dir).glob("*.wav"))
    requests = [
        (OutpaintRequest(p, tags="lofi", extend_after_duration=2, seed=1), p.stem) for p in inputs
    ]
    async with OutpaintClient(
        api_key=DEFAULT_API_KEY,
        base_url=base_url,
        read_timeout=2.0,
        settle_grace=0.5,
        min_check_interval=0.1,
        retry_wait_initial=0.01,
        parallel_submits=4,
        initial_work_per_second=0.01,
        # Paced, so that a kill can land while tasks are still being submitted.
        starts_per_minute=1200,
    ) as client:
        async for result in client.outpaint_many(requests, out_dir, journal=journal):
            files = ",".join(str(f) for f in result.files)
            print(
                f"{result.status.value if hasattr(result.status, 'value') else result.status} "
                f"{result.ok} {result.skipped} {files}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
