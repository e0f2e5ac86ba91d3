"""One HTTP(S) request from the control machine, answers and errors alike (stdlib only).

Safe against any environment: the read-only specs use it against production too.
"""

import ssl
import urllib.error
import urllib.request
from pathlib import Path


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _fetch(opener, url: str, timeout: float, **kw):
    """(status, headers, body) of one request; 4xx/5xx are answers, not exceptions."""
    try:
        with opener.open(urllib.request.Request(url, **kw), timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def http_get(url: str, timeout: float = 10, redirects: bool = True, **kw):
    """A plain-HTTP request (GET unless method= says otherwise)."""
    return _fetch(urllib.request.build_opener(*([] if redirects else [_NoRedirect])), url,
                  timeout, **kw)


def https_get(url: str, ca: Path | None, timeout: float = 5, **kw):
    """A request over HTTPS, verified against the CA file given (the system's trust store when
    None); never unverified."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    return _fetch(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)), url,
                  timeout, **kw)
