"""`client.Http` on aiohttp, so the plugin's client runs against a real server in pytest.

Inside Krita the same client runs on Qt's QNetworkAccessManager (acetate_krita.network);
the end-to-end test covers that transport.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from acetate_krita.client import HttpResponse, NetworkError


class AiohttpTransport:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        try:
            async with self.session.request(
                method,
                url,
                headers=dict(headers),
                data=body,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                data = await response.read()
                names = {key.lower(): value for key, value in response.headers.items()}
                return HttpResponse(response.status, names, data)
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise NetworkError(str(error) or type(error).__name__) from None

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
