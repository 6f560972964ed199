"""Tests for repro.ablation.request: an AblationRequest renders itself as `repro ablate`
arguments and parses back to itself, and the real CLI parses those arguments the same way."""

from __future__ import annotations

import dataclasses
import shlex
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from repro import cli, config, spec_file
from repro.ablation.request import AblationRequest, format_value
from repro.errors import ConfigError

SETTINGS = settings(max_examples=200, deadline=None)
WORD = st.text(alphabet=string.ascii_letters + string.digits + "._/:,-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-"))
VALUE = st.text(alphabet=string.ascii_letters + string.digits + "._/:,=- ", max_size=12).map(str.strip)


@st.composite
def requests(draw) -> AblationRequest:
    return AblationRequest(
        name=draw(st.sampled_from([*spec_file.names(), "all", "ablations/lrn.toml"]) | WORD),
        scale=draw(st.none() | st.sampled_from(spec_file.SCALES)),
        seeds=draw(st.none() | st.integers(1, 20)),
        epochs=draw(st.none() | st.integers(1, 500)),
        data_dir=draw(st.none() | WORD),
        device=draw(st.none() | st.sampled_from(["cpu", "cuda", "cuda:1", "mps", "auto"])),
        results_dir=draw(st.sampled_from(["results"]) | WORD),
        reports_dir=draw(st.sampled_from(["reports"]) | WORD),
        overrides=tuple(draw(st.lists(st.tuples(st.sampled_from(config.all_keys()), VALUE), max_size=4,
                                       unique_by=lambda kv: kv[0]))),
        download=draw(st.booleans()), dry_run=draw(st.booleans()), quiet=draw(st.booleans()),
        jobs=draw(st.integers(1, 16)), plan=draw(st.booleans()),
        only=draw(st.none() | st.lists(WORD, min_size=1, max_size=3).map(tuple)),
    )


@SETTINGS
@given(requests())
def test_a_request_round_trips_through_its_arguments(r):
    assert AblationRequest.from_args(r.to_args()) == r
    assert AblationRequest.from_args(shlex.split(r.command())[2:]) == r


@settings(max_examples=40, deadline=None)
@given(requests())
def test_the_cli_parses_the_arguments_into_the_same_request(monkeypatch_session, r):
    seen = []
    monkeypatch_session.setattr("repro.ablate.run_ablation", lambda request, **kw: seen.append(request))
    result = CliRunner().invoke(cli.app, ["ablate", *r.to_args()])
    assert result.exit_code == 0, (result.output, result.exception)
    assert seen == [r]


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_typed_overrides_render_as_the_command_line_writes_them():
    r = AblationRequest("lrn", overrides={"lr": 0.02, "milestones": (8, 12), "bias_init": None, "flip": True})
    assert r.to_args() == ["lrn", "--set", "lr=0.02", "--set", "milestones=8,12", "--set", "bias_init=none",
                           "--set", "flip=true"]
    back = AblationRequest.from_args(r.to_args())
    assert config.apply(config.RunConfig(), back.override_map) == config.apply(config.RunConfig(), r.override_map)
    assert format_value(False) == "false" and format_value([1]) == "1"


def test_for_run_keeps_what_decides_the_hash_and_where_it_lies():
    r = AblationRequest("all", scale="smoke", seeds=2, epochs=3, data_dir="/d", device="cpu", results_dir="r",
                        reports_dir="p", overrides={"lr": "0.01"}, quiet=True, jobs=4, plan=True)
    one = r.for_run("on/0-abc")
    assert one.to_args() == ["all", "--scale", "smoke", "--seeds", "2", "--epochs", "3", "--data-dir", "/d",
                             "--device", "cpu", "--results", "r", "--reports", "p", "--set", "lr=0.01",
                             "--only", "on/0-abc"]  # --reports: where a real-data run's record is published
    assert one.command().startswith("repro ablate all --scale smoke")
    assert dataclasses.replace(one, only=None).to_args()[-1] == "lr=0.01"


def test_requests_are_frozen_and_hashable():
    assert AblationRequest("lrn", overrides=[("lr", "1"), ("epochs", "2"), ("lr", "3")]).overrides == (
        ("lr", "3"), ("epochs", "2"))  # as the command line's --set: the last value wins
    r = AblationRequest("lrn", overrides={"lr": "0.01"}, only=["on/0"])
    assert r.overrides == (("lr", "0.01"),) and r.only == ("on/0",) and hash(r) == hash(AblationRequest.from_args(
        r.to_args()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "dropout"


@pytest.mark.parametrize("args,why", [([], "missing NAME"), (["lrn", "--seeds"], "needs a value"),
                                      (["lrn", "--seeds", "two"], "not a whole number"),
                                      (["lrn", "--set", "lr"], "key=value"), (["lrn", "--bogus"], "unexpected"),
                                      (["lrn", "dropout"], "unexpected")])
def test_bad_arguments_are_one_line_config_errors(args, why):
    with pytest.raises(ConfigError, match=why):
        AblationRequest.from_args(args)


def test_equals_form_parses_too():
    assert AblationRequest.from_args(["lrn", "--scale=smoke", "--jobs=2", "-s", "lr=0.1"]) == AblationRequest(
        "lrn", scale="smoke", jobs=2, overrides={"lr": "0.1"})
