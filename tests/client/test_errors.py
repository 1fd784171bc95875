"""Every failure is one line on standard error, ``hodei: …``, and an exit status: 1 for a
failure, 2 for a mistake of the user's. The client raises ``ApiError`` with the server's
words."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from hodei_http.client import ApiError, ApiProblem, HodeiClient, ServerUnreachable

from .conftest import ACME, RunCommand


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "show", "job-nope"],
        ["jobs", "cancel", "job-nope"],
        ["logs", "job-nope"],
        ["logs", "-f", "job-nope"],
        ["pipelines", "run", "pip-nope", "--wait"],
    ],
)
async def test_an_unknown_id_is_one_line_and_exit_1(hodei: RunCommand, argv: list[str]) -> None:
    status, out, err = await hodei(*argv)
    assert (status, out) == (1, "")
    assert err.startswith("hodei: ") and err.endswith(" not found\n") and err.count("\n") == 1


async def test_an_id_cannot_reach_another_route(hodei: RunCommand) -> None:
    # sent as one segment, `../workers` is no job, not the list of workers
    assert await hodei("jobs", "show", "../workers") == (
        1, "", "hodei: no such endpoint: /api/v1/jobs/../workers\n",
    )  # fmt: skip


async def test_a_bad_token_is_one_line_and_exit_1(hodei: RunCommand) -> None:
    assert await hodei("jobs", "list", token="not-a-token-of-this-server") == (
        1, "", "hodei: the server refused the token (set --token or HODEI_TOKEN)\n",
    )  # fmt: skip
    assert await hodei("workers", token=None) == (
        1, "", "hodei: the server wants a token (set --token or HODEI_TOKEN)\n",
    )  # fmt: skip


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port where nothing listens (bound, so that nothing else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("argv", [["jobs", "list"], ["logs", "-f", "job-1"], ["submit", "true"]])
async def test_an_unreachable_server_is_one_line_and_exit_1(
    hodei: RunCommand, argv: list[str], closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    assert await hodei(*argv, server_url=url) == (
        1, "", f"hodei: cannot reach the server at {url}: Connection refused\n",
    )  # fmt: skip


async def test_the_environment_names_the_server_and_the_token(
    hodei: RunCommand, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HODEI_SERVER", server.removeprefix("http://"))  # a scheme is optional
    monkeypatch.setenv("HODEI_TOKEN", ACME)
    status, out, err = await hodei("jobs", "list", server_url=None, token=None)
    assert (status, err) == (0, "")
    assert out.split() == ["ID", "NAME", "STATE", "ATTEMPT", "WORKER", "EXIT", "AGE"]


async def test_a_server_url_of_another_scheme_is_a_usage_error(hodei: RunCommand) -> None:
    assert await hodei("workers", server_url="ftp://x") == (
        2, "", "hodei: --server wants a URL such as http://127.0.0.1:8080, not 'ftp://x'\n",
    )  # fmt: skip


async def test_the_client_raises_the_servers_error(client: HodeiClient) -> None:
    with pytest.raises(ApiError) as caught:
        await client.create_pipeline({"name": "x", "steps": [{"name": "a"}]})
    error = caught.value
    assert (error.status, error.code) == (400, "invalid")
    assert error.details == (ApiProblem("steps[0]", error.details[0].message),)
    with pytest.raises(ApiError) as caught:
        await client.get_job("job-nope")
    assert (caught.value.status, caught.value.code, str(caught.value)) == (
        404, "not_found", "job 'job-nope' not found",
    )  # fmt: skip


async def test_an_answer_not_from_hodei_is_an_api_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jobs"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, text="hello")

    async with HodeiClient("http://x", transport=httpx.MockTransport(proxy)) as client:
        with pytest.raises(ApiError) as caught:
            await client.list_jobs()
        assert (caught.value.code, caught.value.message) == ("http_502", "HTTP 502 Bad Gateway")
        with pytest.raises(ApiError, match="not a JSON object: is it a Hodei server"):
            await client.get_job("job-1")
        with pytest.raises(ApiError, match="an id cannot be empty"):
            await client.get_job("")


async def test_a_dropped_connection_is_server_unreachable() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async with HodeiClient("http://x", transport=httpx.MockTransport(drop)) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.list_workers()
    assert (
        str(caught.value) == "lost the connection to the server at http://x: peer closed connection"
    )
