"""HTTP on Qt's QNetworkAccessManager, awaited from the plugin's asyncio loop.

Qt does the I/O inside its own event loop; a reply's `finished` signal resolves an asyncio
future, so a request never blocks Krita. Cancelling the awaiting task aborts the reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from .client import HttpResponse, NetworkError
from .qt import QtCore, QtNetwork

Request = QtNetwork.QNetworkRequest


class QtHttp:
    """The `client.Http` transport used inside Krita."""

    def __init__(self) -> None:
        self._manager = QtNetwork.QNetworkAccessManager()

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        request = Request(QtCore.QUrl(url))
        for name, value in headers.items():
            request.setRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        # An inactivity timeout: a slow but progressing download is fine.
        request.setTransferTimeout(int(timeout * 1000))
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        reply = self._manager.sendCustomRequest(
            request, method.encode("ascii"), QtCore.QByteArray(body or b"")
        )

        def done() -> None:
            if not finished.done():
                finished.set_result(None)

        reply.finished.connect(done)
        try:
            await finished
            status = reply.attribute(Request.Attribute.HttpStatusCodeAttribute)
            if status is None:
                if reply.error() == QtNetwork.QNetworkReply.NetworkError.SslHandshakeFailedError:
                    host = QtCore.QUrl(url).host()
                    raise NetworkError(
                        f"the server {host} has a TLS certificate this computer does not trust "
                        f"({reply.errorString()}); install the server's certificate (or its CA) "
                        "in the system's trusted certificates, or use a certificate from a "
                        "trusted authority"
                    )
                raise NetworkError(reply.errorString())
            response_headers = {
                bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
                for name, value in reply.rawHeaderPairs()
            }
            return HttpResponse(int(status), response_headers, bytes(reply.readAll()))
        except asyncio.CancelledError:
            reply.abort()
            raise
        finally:
            reply.deleteLater()
