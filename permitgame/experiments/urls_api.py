from django.urls import path

from permitgame.experiments import api

urlpatterns = [
    path("", api.experiments, name="api-experiments"),
    path("/<str:code>", api.status, name="api-experiment"),
    path("/<str:code>/games", api.games, name="api-experiment-games"),
    path("/<str:code>/data.zip", api.data, name="api-experiment-data"),
    path("/<str:code>/enter", api.enter, name="api-experiment-enter"),
]
