"""A fixable fault server behind authentication, as vLLM's `--api-key` does it: chat
and /v1/models want `Authorization: Bearer <key>` (and any `required` extra headers)
and answer 401 without it; /health stays open."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from fixable_server import Target

KEY = "s3cret-key-0123"
TEAM = ("X-Team", "blue-team-9876")


class Guarded(Target):
    """`Target` that answers 401 unless the request carries `key` and `required`."""

    def __init__(self, *, key: str = KEY, required: tuple[tuple[str, str], ...] = (TEAM,),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key, self.required = key, required
        self.refused = 0

    def _allowed(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bearer {self.key}" and all(
            request.headers.get(name) == value for name, value in self.required)
        self.refused += not ok
        return ok

    @staticmethod
    def _refuse() -> web.Response:
        return web.json_response({"error": "Unauthorized"}, status=401)

    async def _chat(self, request):  # type: ignore[no-untyped-def]
        return await super()._chat(request) if self._allowed(request) else self._refuse()

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await super()._models(request) if self._allowed(request) else self._refuse()
