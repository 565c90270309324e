"""A small web service that extends its users' tracks, with results pushed by webhooks.

    python examples/webhook_backend.py --emulator            # offline, on the emulator
    curl -F file=@song.wav -F tags="lofi, chill" -F after=20 \\
        http://127.0.0.1:8080/extend -o song-extended.wav

`POST /extend` takes a multipart upload (`file`, `tags`, optional `before` / `after` in
seconds), awaits the outpaint result and answers with the extended WAV. The service
never polls while webhooks arrive: the WaveSpeed service POSTs each finished prediction
to `/outpaint/webhook` on this same app, which hands it to the waiting request. Without
`--emulator`, set WAVESPEED_API_KEY and give `--public-url`, the address at which the
service can reach this app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import BodyPartReader, web

from wavespeed_outpaint import (
    OutpaintClient,
    OutpaintError,
    OutpaintRequest,
    TaskFailedError,
    ValidationError,
    WebhookReceiver,
)

CLIENT = web.AppKey("client", OutpaintClient)


async def extend(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    workdir = Path(tempfile.mkdtemp(prefix="extend-"))
    try:
        fields: dict[str, str] = {}
        upload: Path | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file" and part.filename:
                upload = workdir / Path(part.filename).name
                with upload.open("wb") as f:
                    while chunk := await part.read_chunk():
                        f.write(chunk)
            elif part.name:
                fields[part.name] = await part.text()
        if upload is None:
            raise web.HTTPBadRequest(text="send the track as a multipart field 'file'")
        try:
            # Checked now (format, duration, size, off the event loop): a bad upload
            # gets a 400 before anything is charged.
            job = await OutpaintRequest.from_file(
                upload,
                tags=fields.get("tags", ""),
                extend_before_duration=float(fields.get("before", 0)),
                extend_after_duration=float(fields.get("after", 30)),
            )
        except (ValidationError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        try:
            result = await client.outpaint(job, workdir / "out")
        except ValidationError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except TaskFailedError as exc:
            raise web.HTTPBadGateway(text=str(exc)) from None
        except OutpaintError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        response = web.FileResponse(result.files[0])
        response.headers["X-Prediction-Id"] = result.prediction_id or ""
        response.headers["X-Delivered-By"] = result.delivered_by or ""
        await response.prepare(request)
        return response
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def outpaint_client(use_emulator: bool) -> AsyncIterator[OutpaintClient]:
    if not use_emulator:
        async with OutpaintClient() as client:
            yield client
        return
    from wavespeed_outpaint.emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(time_scale=0.05)) as emulator:
        print(f"emulator on {emulator.base_url}", flush=True)
        async with OutpaintClient(DEFAULT_API_KEY, emulator.base_url) as client:
            yield client


async def main(args: argparse.Namespace) -> None:
    async with outpaint_client(args.emulator) as client:
        receiver = WebhookReceiver(client)
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app[CLIENT] = client
        app.router.add_post("/extend", extend)
        app.add_subapp("/outpaint", receiver.app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            public = args.public_url or f"http://{host}:{port}"
            client.webhook_url = f"{public.rstrip('/')}/outpaint{receiver.path}"
            print(
                f"listening on http://{host}:{port} (webhooks at {client.webhook_url})", flush=True
            )
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Extend uploaded tracks; results by webhook.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--public-url", help="where the service reaches this app")
    parser.add_argument("--emulator", action="store_true", help="run on an embedded emulator")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
