from django.urls import path

from permitgame.experiments import console

app_name = "experiments-console"
urlpatterns = [
    path("", console.home, name="home"),
    path("new/", console.new, name="new"),
    path("validate/", console.validate, name="validate"),
    path("<str:code>/", console.monitor, name="monitor"),
    path("<str:code>/data.zip", console.data, name="data"),
    path("<str:code>/rooms/<str:game>/<str:action>/", console.room_control, name="control"),
]
