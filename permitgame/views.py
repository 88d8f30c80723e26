"""Thin function views: a full page, or a partial when ``request.htmx``."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "permitgame/home.html")
