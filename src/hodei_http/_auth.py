"""Who is calling: tenants (API tokens), agents (the registration token) and workers.

A worker's token is ``<worker_id>.<mac>`` where ``mac`` is an HMAC-SHA256 of the worker id
under the server's secret. Nothing is stored per worker: any server process with the same
secret recognises the token, also after a restart, and a token names the one worker it is
good for. Tenant and agent tokens are kept as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import base64
import hmac

import attrs

from ._errors import ApiError
from ._settings import ServerSettings, hash_token

__all__ = ["Agent", "Authenticator", "Caller", "Tenant", "WorkerCaller"]


@attrs.frozen
class Tenant:
    """A user of the API, holding its tenant's API token."""

    name: str


@attrs.frozen
class Agent:
    """Whoever holds the agent registration token: may register workers and see the fleet."""


@attrs.frozen
class WorkerCaller:
    """A registered worker, holding the token it was given at registration."""

    worker_id: str


Caller = Tenant | Agent | WorkerCaller

_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="hodei"'}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_UNAUTHORIZED_HEADERS)


class Authenticator:
    """Turns an ``Authorization`` header into a ``Caller``, and mints worker tokens."""

    def __init__(self, settings: ServerSettings) -> None:
        self._known: list[tuple[bytes, Caller]] = [
            (bytes.fromhex(settings.agent_token_sha256), Agent()),
            *((bytes.fromhex(t.token_sha256), Tenant(t.name)) for t in settings.tenants),
        ]
        self._secret = settings.secret

    def _mac(self, worker_id: str) -> str:
        digest = hmac.digest(self._secret, b"worker:" + worker_id.encode(), "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def worker_token(self, worker_id: str) -> str:
        """The token that the worker ``worker_id`` (and only it) authenticates with."""
        return f"{worker_id}.{self._mac(worker_id)}"

    def identify(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header value stands for.

        Raises:
            ApiError: 401 when the header is missing, malformed, or the token is unknown.
        """
        if not authorization:
            raise _unauthorized("missing 'Authorization: Bearer <token>' header")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        worker_id, dot, mac = token.rpartition(".")
        if dot:
            # compare_digest wants ASCII str or bytes; a token with other characters is no token
            if token.isascii() and hmac.compare_digest(mac, self._mac(worker_id)):
                return WorkerCaller(worker_id)
            raise _unauthorized("invalid or expired worker token: register again")
        digest = bytes.fromhex(hash_token(token))
        found: Caller | None = None
        for known, caller in self._known:  # every entry is compared: no early exit to time
            if hmac.compare_digest(known, digest):
                found = caller
        if found is None:
            raise _unauthorized("unknown token")
        return found
