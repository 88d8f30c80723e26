"""URLs of the instructor's console (``/console/``) and of the login pages (``/accounts/``)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from permitgame.console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("new/", views.new_game, name="new"),
    path("new/preview/", views.new_game_preview, name="new-preview"),
    path("presets/<int:preset_id>/delete/", views.preset_delete, name="preset-delete"),
    path("games/<str:code>/", views.game_console, name="game"),
    path("games/<str:code>/projector/", views.projector, name="projector"),
    path("games/<str:code>/control/<str:action>/", views.control, name="control"),
    path("games/<str:code>/seats/add-bot/", views.add_bot, name="add-bot"),
    path("games/<str:code>/seats/remove-bot/", views.remove_bot, name="remove-bot"),
    path("games/<str:code>/seats/governor/", views.governor, name="governor"),
    path("games/<str:code>/seats/<int:seat_id>/hand/", views.hand, name="hand"),
    path("games/<str:code>/debrief/", views.debrief_page, name="debrief"),
    path("games/<str:code>/debrief/<str:kind>/", views.debrief_part, name="debrief-part"),
    path("games/<str:code>/charts/<str:name>.csv", views.chart_csv, name="chart-csv"),
    path("games/<str:code>/export/<str:name>.csv", views.export_csv, name="export-csv"),
]

#: Django's login and logout views with our templates (``templates/registration/``).
auth_urlpatterns = [
    path(
        "login/",
        views.LoginView.as_view(next_page="console:home", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
]
