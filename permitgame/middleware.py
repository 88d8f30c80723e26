"""Responses that carry a seat (a rejoin code, a token) or the instructor's console are not stored.

``Cache-Control: no-store`` (with Django's ``add_never_cache_headers``) on the players' pages
(``/join/``, ``/rejoin/``, ``/play/``), the JSON API (a join answer holds the seat's token) and
the console and login pages: a shared computer's browser cache, or a proxy, keeps none of them.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

#: Path prefixes whose answers are never stored.
NO_STORE_PREFIXES = ("/join/", "/rejoin/", "/play/", "/api/", "/console/", "/accounts/")


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path.startswith(NO_STORE_PREFIXES):
            add_never_cache_headers(response)
        return response
