from django.urls import path

from permitgame.experiments import views

app_name = "experiments"
urlpatterns = [
    path("<str:code>/", views.entry, name="entry"),
    path("<str:code>/next/", views.step, name="step"),
]
