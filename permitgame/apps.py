from django.apps import AppConfig


class PermitgameConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "permitgame"
    verbose_name = "PermitGame"
