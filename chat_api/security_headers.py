"""Security headers on every response (a pure ASGI middleware: streaming responses pass through
untouched, only the start message is edited).

    every response     X-Content-Type-Options: nosniff
    HTML responses     X-Frame-Options: DENY, and a Content-Security-Policy with
                       frame-ancestors 'none' unless the route set its own (the dashboard's is
                       stricter: `chat_api.routes.web.DASHBOARD_CSP`)

The default policy restricts only framing, plugins and <base>: the demo page and the API docs
keep working (the docs load Swagger UI and ReDoc from a CDN with an inline script; they are off
in production, see `Settings.serve_docs`). A header a route already set is left as it is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTML_CSP = "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

ALWAYS_HEADERS = ((b"x-content-type-options", b"nosniff"),)
_HTML = ((b"x-frame-options", b"DENY"), (b"content-security-policy", HTML_CSP.encode()))


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                is_html = content_type.lower().startswith(b"text/html")
                wanted = ALWAYS_HEADERS + (_HTML if is_html else ())
                headers.extend((n, v) for n, v in wanted if n not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
