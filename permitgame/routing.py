"""WebSocket routes, mounted by ``permitgame.asgi`` under the origin check.

Only the browsers' sockets (the players' pages and the console) pass Django's session and
user lookup (``AuthMiddlewareStack``): a JSON-protocol socket's credential is its token, and a
lookup before ``accept`` would queue every handshake of a filling lecture hall on the process's
one database thread, past Daphne's handshake timeout. A path that is none of these gets a clean
close (4404, "no such websocket") instead of the router's exception and a traceback in the log.
"""

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, URLResolver, path, re_path

from permitgame.console.consumers import HostConsumer
from permitgame.consumers import ApiConsumer, PlayConsumer
from permitgame.notfound import NotFoundConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/api/games/<str:code>/", ApiConsumer.as_asgi()),
    path("ws/games/<str:code>/", AuthMiddlewareStack(PlayConsumer.as_asgi())),
    path("ws/host/<str:code>/", AuthMiddlewareStack(HostConsumer.as_asgi())),
    re_path(r"", NotFoundConsumer.as_asgi()),
]
