"""The HTTP side of the emulated API Gateway: turns sockets into HttpRequest / HttpResponse."""

from __future__ import annotations

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
        self.send_all(response.status, response.headers, response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


def gateway_server(gateway: LocalApiGateway, port: int) -> BackgroundServer:
    return BackgroundServer(GatewayHandler, port=port, gateway=gateway)
