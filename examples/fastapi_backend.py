"""A FastAPI service that extends its users' tracks, results pushed by webhooks.

    pip install fastapi python-multipart uvicorn
    python examples/fastapi_backend.py --emulator            # offline, on the emulator
    curl -F file=@song.wav -F tags="lofi, chill" -F after=20 \\
        http://127.0.0.1:8080/extend -o song-extended.wav

One `OutpaintClient` lives as long as the app (its lifespan), shared by every request:
thousands of callers awaiting `outpaint()` cost one poll loop. `POST /extend` takes a
multipart upload (`file`, `tags`, optional `before` / `after` in seconds), awaits the
result and answers with the extended WAV; a bad upload gets a 400 before anything is
charged. The WaveSpeed service POSTs each finished prediction to `/outpaint/webhook`,
verified here from the raw body (`WebhookVerifier`) and handed to the waiting request;
a lost delivery is found by the client's list looks. Without `--emulator`, set
WAVESPEED_API_KEY and give `--public-url`, where the service can reach this app.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import uvicorn
from fastapi import FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask

from wavespeed_outpaint import (
    OutpaintClient,
    OutpaintError,
    OutpaintRequest,
    TaskFailedError,
    ValidationError,
    WebhookVerificationError,
    WebhookVerifier,
)


def make_app(use_emulator: bool, public_url: str | None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with outpaint_client(use_emulator) as client:
            app.state.client = client
            app.state.verifier = WebhookVerifier(await client.webhook_secret())
            app.state.public_url = public_url
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/extend")
    async def extend(
        request: Request,
        file: UploadFile,
        tags: str = Form(...),
        before: float = Form(0.0),
        after: float = Form(30.0),
    ) -> FileResponse:
        client: OutpaintClient = request.app.state.client
        if client.webhook_url is None and request.app.state.public_url is not None:
            client.webhook_url = f"{request.app.state.public_url.rstrip('/')}/outpaint/webhook"
        workdir = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
        cleanup = BackgroundTask(shutil.rmtree, workdir, ignore_errors=True)
        try:
            upload = workdir / Path(file.filename or "upload").name
            await anyio.to_thread.run_sync(_save, file, upload)
            # Checked now (format, duration, size): a bad upload is refused for free.
            job = await OutpaintRequest.from_file(
                upload, tags=tags, extend_before_duration=before, extend_after_duration=after
            )
            result = await client.outpaint(job, workdir / "out")
        except ValidationError as exc:
            await cleanup()
            raise HTTPException(400, str(exc)) from None
        except TaskFailedError as exc:
            await cleanup()
            raise HTTPException(502, str(exc)) from None
        except OutpaintError as exc:
            await cleanup()
            raise HTTPException(503, str(exc)) from None
        except BaseException:
            await cleanup()
            raise
        headers = {
            "X-Prediction-Id": result.prediction_id or "",
            "X-Delivered-By": result.delivered_by or "",
        }
        return FileResponse(result.files[0], headers=headers, background=cleanup)

    @app.post("/outpaint/webhook", status_code=204)
    async def webhook(request: Request) -> Response:
        try:
            prediction = request.app.state.verifier.verify(await request.body(), request.headers)
        except WebhookVerificationError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        request.app.state.client.deliver(prediction)
        return Response(status_code=204)

    return app


def _save(file: UploadFile, path: Path) -> None:
    with path.open("wb") as f:
        shutil.copyfileobj(file.file, f)


@contextlib.asynccontextmanager
async def outpaint_client(use_emulator: bool) -> AsyncIterator[OutpaintClient]:
    if not use_emulator:
        async with OutpaintClient() as client:
            yield client
        return
    from wavespeed_outpaint.emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

    async with (
        Emulator(EmulatorConfig(time_scale=0.05)) as emulator,
        OutpaintClient(DEFAULT_API_KEY, emulator.base_url) as client,
    ):
        yield client


async def main(args: argparse.Namespace) -> None:
    app = make_app(args.emulator, args.public_url)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:  # noqa: ASYNC110 - uvicorn says so by a flag only
            await anyio.sleep(0.05)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        if args.public_url is None:  # the emulator calls back on loopback
            app.state.client.webhook_url = f"http://{host}:{port}/outpaint/webhook"
        print(f"listening on http://{host}:{port}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Extend uploaded tracks; results by webhook.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--public-url", help="where the service reaches this app")
    parser.add_argument("--emulator", action="store_true", help="run on an embedded emulator")
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, parser.parse_args())
