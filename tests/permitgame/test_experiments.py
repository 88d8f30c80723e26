"""Experiments: the design's validation, balanced seeded assignment, the participants' path
(label re-entry, the quiz gate), the lobby fill, and the exports against their codebook."""

import csv
import io
import json
import re
from collections import Counter

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from permitgame import services as game_services
from permitgame import ticker
from permitgame.experiments import exports, materials, services
from permitgame.experiments.assignment import complete_sequence, treatment_at
from permitgame.experiments.design import DesignError, parse_design
from permitgame.experiments.models import Event, Experiment, Participant
from permitgame.models import Move, Status
from tests.permitgame.console_fixtures import play_to_end

pytestmark = pytest.mark.django_db


def design(**changes):
    doc = {
        "name": "Permits and audits",
        "seed": 11,
        "treatments": {
            "random": {
                "scenario": "random_audit",
                "overrides": {"rounds": 2, "labs": {"count": 3}},
                "seats": {"human_labs": 1},
                "rooms": 2,
                "durations": {"bidding": 30, "compliance": 30, "audit": 30, "results": 0},
            },
            "targeted": {
                "scenario": "targeted_audit",
                "overrides": {"rounds": 2, "labs": {"count": 3}},
                "seats": {"human_labs": 1},
                "rooms": 2,
                "durations": {"bidding": 30, "compliance": 30, "audit": 30, "results": 0},
            },
        },
        "payment": {"show_up_fee": 5.0, "per_point": 2.0, "cap": 30.0},
        "completion": {"redirect_url": "https://panel.example.org/done?code={code}"},
    }
    doc.update(changes)
    return doc


# ------------------------------------------------------------------------------ the design


def test_a_minimal_design_is_completed_with_every_default():
    complete = parse_design({"treatments": {"a": {}}})
    assert complete["bot_disclosure"] == "revealed_at_end"
    assert complete["treatments"]["a"]["rooms"] == 1
    assert complete["treatments"]["a"]["scenario"]["name"] == "targeted_audit"
    assert complete["assignment"] == {"method": "complete", "block_size": 1, "participants": 1}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"colour": "red"}, "colour"),  # an unknown top-level key
        ({"treatments": {}}, "treatments"),  # no treatment
        ({"treatments": {"a": {"seats": {"human_labs": "2"}}}}, "treatments.a.seats.human_labs"),
        ({"treatments": {"a": {"seats": {"humans": 2}}}}, "treatments.a.seats.humans"),
        ({"treatments": {"a": {"scenario": "no_such_preset"}}}, "treatments.a.scenario"),
        ({"treatments": {"a": {"overrides": {"audit": {"fine": -1}}}}}, "treatments.a.overrides"),
        ({"treatments": {"a": {"durations": {"lunch": 5}}}}, "treatments.a.durations.lunch"),
        ({"treatments": {"a": {"seats": {"human_labs": 99}}}}, "treatments.a.seats.human_labs"),
        ({"bot_disclosure": "sometimes"}, "bot_disclosure"),
        ({"payment": {"per_point": True}}, "payment.per_point"),
        ({"assignment": {"method": "stratified"}}, "assignment.method"),
        ({"participants": {"roster": ["a", "a"]}}, "participants.roster[1]"),
        ({"quiz": {"max_attempts": 0}}, "quiz.max_attempts"),
        ({"completion": {"redirect_url": "ftp://x"}}, "completion.redirect_url"),
        ({"rooms": "open"}, "treatments.random.rooms"),
        ({"treatments": {"a": {"room_size": "3"}}}, "treatments.a.room_size"),
        ({"treatments": {"a": {"room_size": 0}}}, "treatments.a.room_size"),
        ({"treatments": {"a": {"room_size": 99}}}, "treatments.a.room_size"),
        (
            {"treatments": {"a": {"room_size": 3, "seats": {"human_labs": 2}}}},
            "treatments.a.room_size",
        ),
        (
            {
                "treatments": {
                    "a": {"room_size": 2, "seats": {"human_labs": 2, "governor": "human"}}
                }
            },
            "treatments.a.room_size",
        ),
    ],
)
def test_each_kind_of_bad_key_is_named(change, key):
    doc = design(**change) if "treatments" not in change else {**design(), **change}
    with pytest.raises(DesignError) as caught:
        parse_design(doc)
    assert caught.value.key == key, str(caught.value)


@pytest.mark.parametrize(
    ("treatment", "human_labs", "room_size"),
    [
        ({}, 1, 1),  # neither: one human lab, a room of one
        ({"room_size": 3}, 3, 3),  # room_size alone sets the human labs
        ({"room_size": 3, "seats": {"governor": "human"}}, 2, 3),  # ... one seat governs
        ({"room_size": 1, "seats": {"governor": "human"}}, 0, 1),  # a human governor alone
        ({"seats": {"human_labs": 2, "governor": "human"}}, 2, 3),  # human_labs alone
        ({"room_size": 3, "seats": {"human_labs": 2, "governor": "human"}}, 2, 3),  # both agree
    ],
)
def test_room_size_and_human_labs_are_one_number(treatment, human_labs, room_size):
    complete = parse_design({"treatments": {"a": treatment}})["treatments"]["a"]
    assert (complete["seats"]["human_labs"], complete["room_size"]) == (human_labs, room_size)


def test_a_room_opens_with_the_room_size_of_its_treatment():
    doc = design()
    doc["treatments"]["random"]["room_size"] = 2
    del doc["treatments"]["random"]["seats"]
    experiment = services.experiment_create(design=doc)
    room = services._open_room(experiment, "random")
    assert room is not None
    assert room.game.seats.filter(kind="human").count() == 2
    assert experiment.design["assignment"]["participants"] == 2 * 2 + 2 * 1


def test_the_create_command_prints_the_code_and_entry_url_and_refuses_a_bad_design(
    tmp_path, capsys
):
    path = tmp_path / "design.json"
    path.write_text(json.dumps(design()))
    call_command("experiment", "create", str(path), "--json")
    out = json.loads(capsys.readouterr().out)
    assert Experiment.objects.get(code=out["code"]).name == "Permits and audits"
    assert out["entry_url"].endswith(f"/x/{out['code']}/")

    path.write_text(json.dumps(design(seed=-1)))
    with pytest.raises(CommandError, match="seed: must be between"):
        call_command("experiment", "create", str(path))


# ------------------------------------------------------------------------------ assignment


@pytest.mark.parametrize("participants", [9, 10, 11, 40])
def test_complete_assignment_is_balanced_within_one_and_reproducible(participants):
    names = ["a", "b", "c"]
    drawn = complete_sequence(names, seed=5, participants=participants)
    counts = Counter(drawn)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == participants
    assert drawn == complete_sequence(names, seed=5, participants=participants)
    assert [treatment_at(i, names, seed=5, method="complete", participants=participants)
            for i in range(participants)] == drawn  # fmt: skip
    assert drawn != complete_sequence(names, seed=6, participants=participants)


def test_blocked_assignment_balances_every_block():
    names = ["a", "b"]
    drawn = [treatment_at(i, names, seed=3, method="blocked", block_size=2) for i in range(40)]
    for start in range(0, 40, 4):
        assert Counter(drawn[start : start + 4]) == {"a": 2, "b": 2}
    assert drawn == [treatment_at(i, names, seed=3, method="blocked", block_size=2)
                     for i in range(40)]  # fmt: skip


# ------------------------------------------------------------------------------ participants


def answers_for(experiment, participant):
    treatment = services.quiz_treatment(participant)
    questions = materials.quiz(services.participant_scenario(experiment, treatment))
    return {q.key: q.answer for q in questions}


def test_a_label_always_returns_to_the_same_seat(client):
    experiment = services.experiment_create(design=design())
    start = client.get(f"/x/{experiment.code}/?label=P-17", follow=True)
    assert "I agree" in start.content.decode()
    client.post(f"/x/{experiment.code}/next/", {"consent": "yes"})
    participant = Participant.objects.get(label="P-17")
    answer = client.post(
        f"/x/{experiment.code}/next/", answers_for(experiment, participant), follow=True
    )
    participant.refresh_from_db()
    seat = participant.seat
    assert answer.redirect_chain[-1][0] == f"/play/{seat.game.code}/"
    assert answer.status_code == 200  # the game's own play page, this browser holding the seat

    other_browser = client_class_fresh()
    again = other_browser.get(f"/x/{experiment.code}/?label=P-17", follow=True)
    assert again.redirect_chain[-1][0] == f"/play/{seat.game.code}/"
    assert Participant.objects.filter(experiment=experiment).count() == 1
    assert list(Event.objects.filter(participant=participant).values_list("action", flat=True)) == [
        "arrive", "consent", "assign", "quiz", "seat", "return",
    ]  # fmt: skip


def client_class_fresh():
    from django.test import Client

    return Client()


def test_a_roster_refuses_unknown_labels(client):
    experiment = services.experiment_create(design=design(participants={"roster": ["A1", "A2"]}))
    assert client.get(f"/x/{experiment.code}/?label=ZZ").status_code == 403
    assert client.get(f"/x/{experiment.code}/").status_code == 403
    assert client.get(f"/x/{experiment.code}/?label=A1").status_code == 302


def test_the_quiz_gates_the_room_and_its_attempts_are_limited(client):
    experiment = services.experiment_create(design=design(quiz={"max_attempts": 2}))
    client.get(f"/x/{experiment.code}/?label=Q1")
    client.post(f"/x/{experiment.code}/next/", {"consent": "yes"})
    participant = Participant.objects.get(label="Q1")
    wrong = dict.fromkeys(answers_for(experiment, participant), "nonsense")
    first = client.post(f"/x/{experiment.code}/next/", wrong)
    assert first.status_code == 400 and "Attempts left: 1" in first.content.decode()
    client.post(f"/x/{experiment.code}/next/", wrong)
    participant.refresh_from_db()
    assert (participant.quiz_attempts, participant.quiz_passed, participant.seat) == (
        2,
        False,
        None,
    )
    locked = client.post(f"/x/{experiment.code}/next/", answers_for(experiment, participant))
    assert "used every attempt" in locked.content.decode()
    participant.refresh_from_db()
    assert participant.seat is None and participant.quiz_attempts == 2


def test_the_quiz_answer_comes_from_the_scenarios_rules():
    experiment = services.experiment_create(
        design=design(treatments={"a": {"overrides": {"audit": {"fine": 0.7, "collateral": 0.1}}}})
    )
    scenario = services.participant_scenario(experiment, "a")
    caught = next(q for q in materials.quiz(scenario) if q.key == "caught")
    assert caught.answer == f"{0.7 + 0.1 + scenario['audit']['reputation_penalty']:.2f}"


def test_after_the_lobby_timeout_empty_seats_are_filled_by_bots(frozen_clock):
    doc = design(lobby_timeout=60)
    for treatment in doc["treatments"].values():
        treatment["seats"] = {"human_labs": 2}
    experiment = services.experiment_create(design=doc)
    participant = services.participant_arrive(experiment=experiment, label="early")
    services.participant_consent(participant=participant)
    Participant.objects.filter(pk=participant.pk).update(quiz_passed=True)
    participant = services.participant_assign(participant=participant)
    game = participant.room.game
    assert game.status == Status.LOBBY
    frozen_clock.advance(61)
    ticker.tick()
    game.refresh_from_db()
    assert game.status == Status.RUNNING
    fills = Move.objects.filter(game=game, action="fill")
    assert fills.count() == 1 and fills.get().actor == "system"


# ------------------------------------------------------------------------------ a whole experiment


@pytest.fixture
def finished_experiment(frozen_clock):
    """Two treatments x two rooms of one human lab each: four participants, all games played."""
    experiment = services.experiment_create(design=design())
    for n in range(4):
        p = services.participant_arrive(experiment=experiment, label=f"P{n}")
        p = services.participant_consent(participant=p)
        treatment = services.quiz_treatment(p)
        ok = answers_for(experiment, p)
        assert (
            services.participant_answer_quiz(participant=p, answers=ok, treatment=treatment) == []
        )
        p = services.participant_assign(participant=p)
        game_services.round_submit_bid(seat=p.seat, round_no=1, amount=0.25)
    for p in Participant.objects.filter(experiment=experiment):
        play_to_end(p.room.game)
        services.participant_complete(participant=p)
    return experiment


def test_four_participants_fill_two_rooms_of_each_treatment(finished_experiment):
    rooms = Counter(
        (p.treatment, p.room.number) for p in Participant.objects.select_related("room")
    )
    assert rooms == {("random", 1): 1, ("random", 2): 1, ("targeted", 1): 1, ("targeted", 2): 1}


def test_every_export_table_matches_the_codebook_in_csv_and_parquet(finished_experiment, tmp_path):
    import pyarrow.parquet as pq

    call_command("experiment", "export", finished_experiment.code, "--out", str(tmp_path))
    codebook = list(csv.DictReader(io.StringIO((tmp_path / "codebook.csv").read_text())))
    for table in exports.TABLES:
        header = next(csv.reader(io.StringIO((tmp_path / f"{table}.csv").read_text())))
        documented = [row["column"] for row in codebook if row["table"] == table]
        assert header == documented, table
        assert pq.read_schema(tmp_path / f"{table}.parquet").names == documented, table
    labs = list(csv.DictReader(io.StringIO((tmp_path / "labs.csv").read_text())))
    assert len(labs) == 4 * 2 * 3
    human_first = [r for r in labs if r["round"] == "1" and r["seat"] == "human"]
    assert len(human_first) == 4 and all(r["bid"] == "0.25" for r in human_first)
    assert all(r["cf_bid"] != "" for r in human_first)  # the fallback bot's bid, same draws
    assert all(r["cf_bid"] == "" for r in labs if r["seat"] == "bot")
    payments = list(csv.DictReader(io.StringIO((tmp_path / "payments.csv").read_text())))
    assert {r["label"] for r in payments} == {"P0", "P1", "P2", "P3"}
    assert all(5.0 <= float(r["amount"]) <= 30.0 for r in payments)


def test_the_counterfactual_does_not_depend_on_what_the_human_did(finished_experiment):
    # Common random numbers: the fallback bot's bid is drawn from the round's own streams, so
    # changing the human's logged bid changes the round but never the counterfactual.
    def cf_of(game_code):
        rows = exports.lab_rows(finished_experiment)
        return next(
            r for r in rows if r["game"] == game_code and r["round"] == 1 and r["seat"] == "human"
        )

    p = Participant.objects.filter(experiment=finished_experiment).first()
    before = cf_of(p.room.game.code)
    assert before["bid_by"] == "human" and before["cf_bid"] is not None
    bid = Move.objects.get(seat=p.seat, round_no=1, action="bid")
    Move.objects.filter(pk=bid.pk).update(payload={"amount": 0.9})
    assert cf_of(p.room.game.code)["cf_bid"] == before["cf_bid"]


def test_the_completion_page_shows_points_payment_and_code(client, finished_experiment):
    session = client.session
    p = Participant.objects.get(experiment=finished_experiment, label="P0")
    session["permitgame_participants"] = {finished_experiment.code: p.pk}
    session.save()
    page = client.get(f"/x/{finished_experiment.code}/next/").content.decode()
    p.refresh_from_db()
    assert p.completion_code and p.completion_code in page
    assert f"https://panel.example.org/done?code={p.completion_code}" in page
    assert "EUR" in page


# ------------------------------------------------------------------------------ REST API


@pytest.fixture
def researcher(django_user_model):
    from tests.permitgame.console_fixtures import make_instructor

    return make_instructor(django_user_model, "rita")


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def test_the_rest_api_needs_a_token_and_shows_only_the_owners_experiments(
    client, researcher, django_user_model, capsys
):
    call_command("experiment", "token", "rita")
    key = capsys.readouterr().out.strip()
    assert client.get("/api/experiments").status_code == 401
    assert client.get("/api/experiments", **auth("wrong")).status_code == 401

    bad = client.post("/api/experiments", json.dumps(design(seed="1")),
                      content_type="application/json", **auth(key))  # fmt: skip
    assert bad.status_code == 400 and bad.json()["key"] == "seed"
    made = client.post("/api/experiments", json.dumps(design()),
                       content_type="application/json", **auth(key))  # fmt: skip
    assert made.status_code == 201
    code = made.json()["code"]
    assert made.json()["entry_url"].endswith(f"/x/{code}/")

    listed = client.get("/api/experiments", **auth(key)).json()["experiments"]
    assert [e["code"] for e in listed] == [code]
    status = client.get(f"/api/experiments/{code}", **auth(key)).json()
    assert status["arrivals"] == 0 and set(status["treatments"]) == {"random", "targeted"}
    assert client.get(f"/api/experiments/{code}/games", **auth(key)).json() == {"games": []}
    data = client.get(f"/api/experiments/{code}/data.zip", **auth(key))
    assert data["Content-Type"] == "application/zip"

    from permitgame.experiments.api import token_create

    other = token_create(django_user_model.objects.create_user("olga", password="x" * 12))
    assert client.get(f"/api/experiments/{code}", **auth(other)).status_code == 404


def test_a_program_enters_as_a_participant_and_is_seated_as_a_program(client):
    experiment = services.experiment_create(design=design())
    url = f"/api/experiments/{experiment.code}/enter"
    body = {"label": "bot-7", "client": {"kind": "program", "name": "mybot", "version": "2"}}
    first = client.post(url, json.dumps(body), content_type="application/json")
    assert first.status_code == 400 and first.json()["code"] == "consent"
    quiz = client.post(url, json.dumps({**body, "consent": True}), content_type="application/json")
    assert quiz.json()["code"] == "quiz"
    participant = Participant.objects.get(label="bot-7")
    right = answers_for(experiment, participant)
    assert {q["key"] for q in quiz.json()["questions"]} == set(right)
    answers = {q["key"]: right[q["key"]] for q in quiz.json()["questions"]}
    seated = client.post(url, json.dumps({**body, "answers": answers}),
                         content_type="application/json")  # fmt: skip
    assert seated.status_code == 201, seated.json()
    participant = Participant.objects.get(label="bot-7")
    assert participant.seat.is_program and participant.seat.token == seated.json()["token"]
    again = client.post(url, json.dumps(body), content_type="application/json")
    assert again.json()["token"] == seated.json()["token"]  # the same label, the same seat


# ------------------------------------------------------------------------------ console pages


def test_the_design_editor_checks_as_you_type_and_creates(client, researcher):

    client.force_login(researcher)
    page = client.get("/console/experiments/new/")
    assert page.status_code == 200 and "Permits and audits" in page.content.decode()
    verdict = client.post("/console/experiments/validate/",
                          {"design": json.dumps(design(bot_disclosure="maybe"))})  # fmt: skip
    assert 'data-key="bot_disclosure"' in verdict.content.decode()
    ok = client.post("/console/experiments/validate/", {"design": json.dumps(design())})
    assert "Valid: 2 treatments" in ok.content.decode()
    made = client.post("/console/experiments/new/",
                       {"design": json.dumps(design()), "create": "1"})  # fmt: skip
    experiment = Experiment.objects.get(owner=researcher)
    assert made["Location"] == f"/console/experiments/{experiment.code}/"


def test_the_monitor_shows_rooms_and_controls_them(client, researcher, frozen_clock):

    experiment = services.experiment_create(design=design(lobby_timeout=None), owner=researcher)
    doc = experiment.design
    for treatment in doc["treatments"].values():
        treatment["seats"]["human_labs"] = 2
    Experiment.objects.filter(pk=experiment.pk).update(design=doc)
    experiment.refresh_from_db()
    p = services.participant_consent(
        participant=services.participant_arrive(experiment=experiment, label="M1")
    )
    Participant.objects.filter(pk=p.pk).update(quiz_passed=True)
    p = services.participant_assign(participant=p)
    client.force_login(researcher)
    page = client.get(f"/console/experiments/{experiment.code}/").content.decode()
    assert f'data-game="{p.room.game.code}"' in page and "1 of 2" in page
    start = f"/console/experiments/{experiment.code}/rooms/{p.room.game.code}/start/"
    assert client.post(start).status_code == 302
    p.room.game.refresh_from_db()
    assert p.room.game.status == Status.RUNNING
    assert (
        client.post(
            f"/console/experiments/{experiment.code}/rooms/{p.room.game.code}/x/"
        ).status_code
        == 404
    )


def test_the_monitors_controls_answer_in_place_with_htmx(client, researcher, frozen_clock):
    experiment = services.experiment_create(design=design(lobby_timeout=None), owner=researcher)
    p = services.participant_consent(
        participant=services.participant_arrive(experiment=experiment, label="H1")
    )
    Participant.objects.filter(pk=p.pk).update(quiz_passed=True)
    p = services.participant_assign(participant=p)
    game = p.room.game
    client.force_login(researcher)
    base = f"/console/experiments/{experiment.code}/rooms/{game.code}"
    htmx = {"HTTP_HX_REQUEST": "true"}

    paused = client.post(f"{base}/pause/", **htmx)  # the room's game is running (full)
    html = paused.content.decode()
    assert paused.status_code == 200 and html.lstrip().startswith('<div id="monitor-live"')
    assert 'id="monitor-flash"' in html and 'hx-swap-oob="true"' in html
    assert "random room 1: Paused" in html
    # Pause gave way to Resume, which takes the keyboard focus.
    assert re.search(rf'id="control-{game.code}-resume"[^>]*autofocus', html)
    assert f'id="control-{game.code}-pause"' not in html

    ended = client.post(f"{base}/end/", **htmx)
    assert ended.status_code == 200 and 'class="console-flash flash-ok"' in ended.content.decode()
    again = client.post(f"{base}/end/", **htmx)  # refused: shown in the page, nothing changes
    html = again.content.decode()
    assert again.status_code == 410 and 'role="alert"' in html and "already over" in html
    assert re.search(r'id="monitor-flash"[^>]*autofocus', html)  # no control left to focus
    game.refresh_from_db()
    assert game.status == Status.FINISHED


def test_another_researchers_monitor_is_not_found(client, researcher, django_user_model):
    from tests.permitgame.console_fixtures import make_instructor

    experiment = services.experiment_create(design=design(), owner=researcher)
    make_instructor(django_user_model, "olga")
    client.force_login(django_user_model.objects.get(username="olga"))
    assert client.get(f"/console/experiments/{experiment.code}/").status_code == 404
    assert client.get(f"/console/experiments/{experiment.code}/data.zip").status_code == 404


def test_the_docs_walk_through_reads_the_export_into_dataframes(finished_experiment, tmp_path):
    import re
    from pathlib import Path

    import pandas as pd

    call_command("experiment", "export", finished_experiment.code, "--out", str(tmp_path / "data"))
    docs = (Path(__file__).parents[2] / "docs" / "experiments.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", docs, re.S).group(1)
    namespace: dict = {}
    cwd = Path.cwd()
    import os

    os.chdir(tmp_path)
    try:
        exec(snippet, namespace)
    finally:
        os.chdir(cwd)
    labs = namespace["labs"]
    assert isinstance(labs, pd.DataFrame) and len(labs) == 4 * 2 * 3
    assert set(namespace["codebook"]["table"]) >= {"labs", "participants", "metrics", "events"}
    assert list(labs.columns) == exports.columns("labs")
