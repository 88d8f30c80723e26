from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "permitgame.experiments"
    label = "experiments"
    verbose_name = "Experiments"
