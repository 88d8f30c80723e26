"""The experiments' JSON endpoints, listed at the root of the site's URLs (``/api/...``)."""

from django.urls import path

from permitgame.experiments import api

urlpatterns = [
    path("api/experiments", api.experiments, name="api-experiments"),
    path("api/experiments/<str:code>", api.status, name="api-experiment"),
    path("api/experiments/<str:code>/games", api.games, name="api-experiment-games"),
    path("api/experiments/<str:code>/data.zip", api.data, name="api-experiment-data"),
    path("api/experiments/<str:code>/enter", api.enter, name="api-experiment-enter"),
]
