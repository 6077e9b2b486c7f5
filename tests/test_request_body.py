"""Request bodies as gunicorn delivers them: a 413 the client receives, and chunked uploads."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bulksend.models import BulkSend
from tests.conftest import Tenant
from tests.gunicorn_support import GunicornProcess
from tests.test_authentication import SEND_BODY

SEND_PATH = "/api/v1/meta-templates/send-bulk/"
# Small enough to send quickly, large enough that a body over it cannot sit in the kernel's
# buffers: a server that answered without reading it would reset the connection under the client.
LIMIT = 4 * 1024 * 1024
TOO_LARGE = {"error": f"El cuerpo de la solicitud supera el maximo de {LIMIT} bytes"}


@pytest.fixture(scope="module")
def gunicorn(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornProcess]:
    running = GunicornProcess(
        tmp_path_factory.mktemp("gunicorn"),
        # send-bulk's bodies with a Content-Length have their own limit (they are streamed).
        {"API_MAX_BODY_BYTES": str(LIMIT), "SEND_BULK_MAX_BODY_BYTES": str(LIMIT)},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def server(gunicorn: GunicornProcess, transactional_db: None, tenant: Tenant) -> GunicornProcess:
    """gunicorn, once the test's tenant is committed where it can see it."""
    return gunicorn


def raw_post(
    server: GunicornProcess, tenant: Tenant, body: bytes, *, framing: str = ""
) -> tuple[bytes, bytes]:
    """POST `body` over a plain socket, framed by its Content-Length unless `framing` says
    otherwise; the answer's status line and body. A reset while sending or reading raises
    ConnectionError (or BrokenPipeError)."""
    head = (
        f"POST {SEND_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {tenant.raw_key}\r\n"
        f"Content-Type: application/json\r\n{framing or f'Content-Length: {len(body)}'}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head + body)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    status_line = answer.split(b"\r\n", 1)[0]
    return status_line, answer.split(b"\r\n\r\n", 1)[1]


def chunked_post(server: GunicornProcess, tenant: Tenant, chunks: list[bytes]) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(
            "POST",
            SEND_PATH,
            body=iter(chunks),
            headers={"X-API-Key": tenant.raw_key, "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def in_chunks(body: bytes, size: int) -> list[bytes]:
    return [body[start : start + size] for start in range(0, len(body), size)]


def test_a_body_over_the_limit_gets_its_413_not_a_connection_reset(
    server: GunicornProcess, tenant: Tenant
) -> None:
    body = b" " * (LIMIT + LIMIT // 2)

    status_line, answer = raw_post(server, tenant, body)

    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(answer) == TOO_LARGE
    assert BulkSend.objects.count() == 0


def test_a_send_with_content_length_is_accepted(server: GunicornProcess, tenant: Tenant) -> None:
    status_line, answer = raw_post(server, tenant, json.dumps(SEND_BODY).encode())

    assert status_line == b"HTTP/1.1 202 Accepted"
    assert BulkSend.objects.filter(pk=json.loads(answer)["bulk_send_id"]).exists()


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_a_chunked_send_is_accepted_like_one_with_content_length(
    server: GunicornProcess, tenant: Tenant, chunk_size: int
) -> None:
    body = json.dumps(SEND_BODY).encode()

    status, answer = chunked_post(server, tenant, in_chunks(body, chunk_size))

    assert status == 202, answer
    bulk_send = BulkSend.objects.get(pk=answer["bulk_send_id"])
    assert bulk_send.unique_recipients == 1


def test_a_chunked_body_over_the_limit_gets_413(server: GunicornProcess, tenant: Tenant) -> None:
    status, answer = chunked_post(server, tenant, in_chunks(b" " * (LIMIT + 1), 256 * 1024))

    assert (status, answer) == (413, TOO_LARGE)
    assert BulkSend.objects.count() == 0


def test_a_malformed_chunked_body_gets_400(server: GunicornProcess, tenant: Tenant) -> None:
    body = b"zz\r\n{}\r\n0\r\n\r\n"  # `zz` is no chunk size

    status_line, answer = raw_post(server, tenant, body, framing="Transfer-Encoding: chunked")

    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert json.loads(answer) == {"detail": "Malformed chunked request body."}
