"""WebSocket routes, mounted by ``permitgame.asgi`` under auth and origin checks.

A path that is none of these gets a clean close (4404, "no such websocket") instead of the
router's exception and a traceback in the log.
"""

from django.urls import URLPattern, URLResolver, path, re_path

from permitgame.console.consumers import HostConsumer
from permitgame.consumers import ApiConsumer, PlayConsumer
from permitgame.notfound import NotFoundConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/api/games/<str:code>/", ApiConsumer.as_asgi()),
    path("ws/games/<str:code>/", PlayConsumer.as_asgi()),
    path("ws/host/<str:code>/", HostConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
