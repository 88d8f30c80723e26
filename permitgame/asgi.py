"""ASGI entry point: plain HTTP through Django, WebSockets through Channels.

Served by Daphne (``daphne permitgame.asgi:application``). With ``DEBUG`` on, static files are
served here too, so ``make run`` needs nothing else; in production a reverse proxy serves
``STATIC_ROOT`` (see README, "Production deployment").
"""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")

# Django must be set up before anything imports models, so this comes before the routing imports.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from permitgame import ticker  # noqa: E402
from permitgame.middleware import ConcurrencyLimit  # noqa: E402
from permitgame.origins import SameOriginValidator  # noqa: E402
from permitgame.routing import websocket_urlpatterns  # noqa: E402

# At most HTTP_CONCURRENCY of the players' requests at once per process, and
# HTTP_OTHER_CONCURRENCY of the others (settings): a class joining at once waits its turn
# instead of starving the rooms already playing, and never behind an instructor's download.
http_app = ConcurrencyLimit(
    ASGIStaticFilesHandler(django_asgi_app) if settings.DEBUG else django_asgi_app,
    settings.HTTP_CONCURRENCY,
    settings.HTTP_OTHER_CONCURRENCY,
)

application = ProtocolTypeRouter(
    {
        "http": http_app,
        # The whole origin (scheme, host, port) is checked, as Django's CSRF check does; the
        # browsers' routes add the session (permitgame/routing.py).
        "websocket": SameOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)

# Every server process fires the deadlines that pass (permitgame/ticker.py).
ticker.install()

# Everything made so far (modules, settings, URL patterns, Django's apps and template engines)
# lives as long as the process. Moved out of the cyclic collector's reach, it is no longer walked
# by every full collection: a game of 200 had five of 110-280 ms each, pauses of the whole process
# that a phase change or an ack could be caught behind, about half of it these objects. Garbage
# is collected first, so none is kept for good.
gc.collect()
gc.freeze()
