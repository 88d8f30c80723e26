"""WebSocket routes, mounted by ``permitgame.asgi`` under auth and origin checks."""

from django.urls import URLPattern, URLResolver, path

from permitgame.console.consumers import HostConsumer
from permitgame.consumers import ApiConsumer, PlayConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/api/games/<str:code>/", ApiConsumer.as_asgi()),
    path("ws/games/<str:code>/", PlayConsumer.as_asgi()),
    path("ws/host/<str:code>/", HostConsumer.as_asgi()),
]
