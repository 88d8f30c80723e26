"""WebSocket routes, mounted by ``permitgame.asgi`` under auth and origin checks."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
