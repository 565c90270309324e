"""A real S3-compatible server on loopback for the tests: moto's, in its own process,
started and stopped (by its pid) by the fixture that needs it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from obstore.store import S3Store

# moto checks signatures and IAM policies only when told to, after this many requests
# without: exactly the three that make the admin user (with the health check a plain
# TCP connect, which is not a request).
ADMIN_SETUP_REQUESTS = 3
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
READ_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}
    ],
}

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
        from obstore.store import S3Store

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
        import obstore

        obstore.put(self._store(bucket), key, data)

    def get(self, bucket: str, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self._store(bucket), key).bytes())

    def keys(self, bucket: str) -> list[str]:
        import obstore

        return [m["path"] for batch in obstore.list(self._store(bucket)) for m in batch]

    def open_uploads(self, bucket: str) -> int:
        """Multipart uploads begun and neither completed nor aborted."""
        return self._call("GET", f"/{bucket}?uploads").decode().count("<Upload>")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _moto(extra_env: dict[str, str]) -> Iterator[int]:
    """moto's S3 (and IAM) server on a free loopback port; yields the port."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS, **extra_env},
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the S3 server (moto) did not start")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    with _moto({}) as port:
        yield S3Server(f"http://127.0.0.1:{port}")


@attrs.frozen
class Keys:
    access_key_id: str
    secret_access_key: str = attrs.field(repr=False)

    def env(self, endpoint: str) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": CREDENTIALS["AWS_REGION"],
            "AWS_ENDPOINT_URL": endpoint,
        }


@attrs.frozen
class GuardedS3:
    """An S3 server that checks signatures and IAM policies, as a real store does, with
    three users: one allowed everything, one that may only read, one allowed nothing."""

    endpoint: str
    admin: Keys
    reader: Keys
    nobody: Keys

    def env(self, keys: Keys) -> dict[str, str]:
        return keys.env(self.endpoint)

    def _client(self, service: str, keys: Keys) -> Any:
        import boto3  # moto's own dependency: here only to make users and buckets

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_REGION"],
            aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
        )

    def make_bucket(self, bucket: str) -> None:
        self._client("s3", self.admin).create_bucket(Bucket=bucket)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client("s3", self.admin).put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str) -> list[str]:
        listed = self._client("s3", self.admin).list_objects_v2(Bucket=bucket)
        return [item["Key"] for item in listed.get("Contents", [])]


def _user(iam: Any, name: str, policy: dict[str, Any] | None) -> Keys:
    iam.create_user(UserName=name)
    made = iam.create_access_key(UserName=name)["AccessKey"]
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    return Keys(made["AccessKeyId"], made["SecretAccessKey"])


@contextlib.contextmanager
def guarded_s3_server() -> Iterator[GuardedS3]:
    with _moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(ADMIN_SETUP_REQUESTS)}) as port:
        endpoint = f"http://127.0.0.1:{port}"
        unsigned = GuardedS3(endpoint, *[Keys("setup", "setup")] * 3)
        admin = _user(unsigned._client("iam", unsigned.admin), "admin", ALLOW_ALL)
        iam = unsigned._client("iam", admin)
        yield GuardedS3(
            endpoint, admin, _user(iam, "reader", READ_ONLY), _user(iam, "nobody", None)
        )


class StoreProxy:
    """An S3 endpoint on loopback in front of moto's that does what moto does not: refuse
    a presigned URL past its expiry by its own clock (as S3 does), and fail writes on
    demand (a 500, a dropped connection) to show what the client does about them."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.clock_ahead = 0.0  # seconds this store's clock runs ahead of the client's
        self.failing_writes = 0  # the next writes of outputs (PUTs, parts) answered 500
        self.dropped_writes = 0  # then the next ones cut off without an answer
        self.refused_writes = 0  # how many writes were failed in all
        # The first PUT of each key waits this long: a later write of it overtakes it.
        self.slow_first_writes = 0.0
        self._written: set[str] = set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Runs the proxy in this event loop; yields its endpoint."""
        import aiohttp
        from aiohttp import web

        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", functools.partial(self._handle, session))
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                await runner.cleanup()

    def _expired(self, query: Mapping[str, str]) -> bool:
        signed = query.get("X-Amz-Date")
        if signed is None or "X-Amz-Expires" not in query:
            return False
        at = datetime.strptime(signed, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        now = time.time() + self.clock_ahead
        return now > at.timestamp() + int(query["X-Amz-Expires"])

    async def _handle(self, session: Any, request: Any) -> Any:
        from aiohttp import web

        if request.method == "GET" and self._expired(request.query):
            return web.Response(status=403, text=_s3_error("AccessDenied", "Request has expired"))
        body = await request.read()
        output = request.path.endswith(".wav")  # not the client's probe of the prefix
        if request.method == "PUT" and output and (self.failing_writes or self.dropped_writes):
            self.refused_writes += 1
            if self.failing_writes:
                self.failing_writes -= 1
                return web.Response(status=500, text=_s3_error("InternalError", "try again"))
            self.dropped_writes -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never arrives: the connection is gone
        if request.method == "PUT" and request.path not in self._written:
            self._written.add(request.path)
            await asyncio.sleep(self.slow_first_writes)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.request(
            request.method, self.target + request.path_qs, headers=headers, data=body
        ) as answer:
            data = await answer.read()
            # The body's length is set anew, but a HEAD's answer says the object's.
            dropped = {"transfer-encoding"} | ({"content-length"} if data else set())
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
            return web.Response(status=answer.status, body=data, headers=kept)


def _s3_error(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
