"""``manage.py experiment create FILE [--json]`` and ``experiment export CODE --out DIR``."""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame.experiments import api, exports, services
from permitgame.experiments.design import DesignError
from permitgame.experiments.models import Experiment


class Command(BaseCommand):
    help = (
        "Create an experiment from a design file, export an experiment's data, or make a key "
        "for the experiments' REST API."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an experiment from a design JSON file")
        create.add_argument("file", help="the design document (docs/experiments.md)")
        create.add_argument("--json", action="store_true", help="print one JSON object")
        create.add_argument("--base-url", default="", help="the server's address for the entry URL")
        export = sub.add_parser("export", help="write the experiment's tables and codebook")
        export.add_argument("code", help="the experiment's code")
        export.add_argument("--out", required=True, help="the folder to write to")
        export.add_argument("--no-parquet", action="store_true", help="CSV only")
        token = sub.add_parser("token", help="make a REST API key for a user (printed once)")
        token.add_argument("username")
        token.add_argument("--name", default="", help="what the key is for")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            self._create(options)
        elif options["action"] == "token":
            self._token(options)
        else:
            self._export(options)

    def _token(self, options: dict[str, Any]) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user is called {options['username']!r}")
        self.stdout.write(api.token_create(user, options["name"]))

    def _create(self, options: dict[str, Any]) -> None:
        path = Path(options["file"])
        try:
            text = path.read_text("utf-8")
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        try:
            experiment = services.experiment_create(design=_loads(text))
        except DesignError as error:
            raise CommandError(f"{path}: {error}") from None
        base = (
            options["base_url"]
            or getattr(settings, "PUBLIC_BASE_URL", "")
            or ("http://127.0.0.1:8000")
        )
        url = f"{base.rstrip('/')}/x/{experiment.code}/"
        if options["json"]:
            self.stdout.write(json.dumps({"code": experiment.code, "entry_url": url}))
        else:
            self.stdout.write(f"Experiment {experiment.code} created: {experiment.name}")
            self.stdout.write(f"Participants enter at {url} (add ?label=ID for a panel's ids)")

    def _export(self, options: dict[str, Any]) -> None:
        experiment = Experiment.objects.filter(code=options["code"].upper()).first()
        if experiment is None:
            raise CommandError(f"no experiment has the code {options['code']!r}")
        written = exports.export(
            experiment, Path(options["out"]), parquet=not options["no_parquet"]
        )
        for path in written:
            self.stdout.write(str(path))


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DesignError("", f"not valid JSON: {error.msg} (line {error.lineno})") from None
