"""A real S3-compatible server on loopback for the tests: moto's, in its own process,
started and stopped (by its pid) by the fixture that needs it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import attrs
import obstore
from obstore.store import S3Store

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-access-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    "AWS_REGION": "us-east-1",
}


@attrs.frozen
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this server as its S3."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def _call(self, method: str, path: str) -> bytes:
        # Calls that no object-store client makes (buckets, open uploads): moto checks no
        # signatures, so plain requests do.
        request = urllib.request.Request(self.endpoint + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()  # type: ignore[no-any-return]

    def _store(self, bucket: str) -> S3Store:
        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=CREDENTIALS["AWS_REGION"],
            client_options={"allow_http": True},
        )

    def make_bucket(self, bucket: str) -> None:
        self._call("PUT", f"/{bucket}")

    def put(self, bucket: str, key: str, data: bytes) -> None:
        obstore.put(self._store(bucket), key, data)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(obstore.get(self._store(bucket), key).bytes())

    def keys(self, bucket: str) -> list[str]:
        return [m["path"] for batch in obstore.list(self._store(bucket)) for m in batch]

    def open_uploads(self, bucket: str) -> int:
        """Multipart uploads begun and neither completed nor aborted."""
        return self._call("GET", f"/{bucket}?uploads").decode().count("<Upload>")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    server = S3Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server._call("GET", "/")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the S3 server (moto) did not start") from None
                time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
