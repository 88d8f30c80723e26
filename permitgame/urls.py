from django.contrib import admin
from django.urls import include, path

from permitgame import views
from permitgame.console.urls import auth_urlpatterns
from permitgame.experiments.urls_api import urlpatterns as experiments_api

urlpatterns = [
    path("", views.home, name="home"),
    path("join/", views.join, name="join"),
    path("join/<str:code>/", views.join, name="join-code"),
    path("rejoin/", views.rejoin, name="rejoin"),
    path("play/<str:code>/", views.play, name="play"),
    path("api/games/<str:code>/join", views.api_join, name="api-join"),
    path("api/games/<str:code>/rejoin", views.api_rejoin, name="api-rejoin"),
    path("api/games/<str:code>", views.api_game, name="api-game"),
    path("console/experiments/", include("permitgame.experiments.urls_console")),
    path("console/", include("permitgame.console.urls")),
    path("x/", include("permitgame.experiments.urls")),
    *experiments_api,
    path("accounts/", include(auth_urlpatterns)),
    path("admin/", admin.site.urls),
]
