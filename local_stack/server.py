"""The HTTP side of the emulated API Gateway: turns sockets into HttpRequest / HttpResponse."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from local_stack.apigateway import MAX_BODY_BYTES, HttpRequest, LocalApiGateway
from local_stack.httpbase import BackgroundServer, Handler


class GatewayHandler(Handler):
    def _serve(self) -> None:
        gateway: LocalApiGateway = self.server.state["gateway"]
        target = urlsplit(self.path)
        body, too_large = self.read_body(limit=MAX_BODY_BYTES)
        request = HttpRequest(
            method=self.command,
            path=target.path or "/",
            query=target.query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            too_large=too_large,
        )
        response = gateway.handle(request)
        if response.stream is None:
            self.send_all(response.status, response.headers, response.body)
            return
        self._stream(response.status, response.headers, response.stream)

    def _stream(self, status: int, headers: list[tuple[str, str]], chunks: Iterator[bytes]) -> None:
        """Each chunk as it comes; a client that goes away ends the function's stream too."""
        try:
            self.start_chunked(status, headers)
            for chunk in chunks:
                self.write_chunk(chunk)
            self.end_chunked()
        except OSError:  # the client closed the connection
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


def gateway_server(gateway: LocalApiGateway, port: int) -> BackgroundServer:
    return BackgroundServer(GatewayHandler, port=port, gateway=gateway)
