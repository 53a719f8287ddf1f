"""The API client against `responses`: envelope, authorisation and typed errors."""

import base64

import pytest
import requests
import responses

from atess_exporter.api.client import (ApiError, AtessClient, AuthError, HttpError, MalformedResponseError, NoDataError, RateLimitError, TransportError)
from atess_exporter.config import parse_config
from support import TOKEN

BASE = "http://127.0.0.1:9"
PATH = "/api/v1/hps/data-last"


def client(observed=None, **atess):
    config = parse_config({"atess": {"base_url": BASE, "token": TOKEN, **atess},
                           "devices": [{"sn": "SN1", "type": "hps_central"}], "state_file": ""})
    return AtessClient(config.api, observer=(lambda *a: observed.append(a)) if observed is not None else None)


@pytest.mark.parametrize("code", [0, 200, "0"])
@responses.activate
def test_success_codes_return_data(code):
    responses.get(BASE + PATH, json={"code": code, "data": {"ppv": "12.5"}, "msg": "ok"})
    assert client().latest(PATH, "SN1") == {"ppv": "12.5"}


@responses.activate
def test_every_call_sends_authorization_language_and_timeout():
    seen = {}

    def capture(request):
        seen.update(request.headers)
        seen["url"] = request.url
        return (200, {}, '{"code": 0, "data": {"ppv": 1}, "msg": ""}')

    responses.add_callback(responses.GET, BASE + PATH, callback=capture)
    c = client(language="de", timeout_seconds=7)
    calls = []
    original = c.session.get
    c.session.get = lambda *a, **kw: calls.append(kw) or original(*a, **kw)
    c.latest(PATH, "SN1")
    assert seen["Authorization"] == f"Basic {TOKEN}"
    assert seen["Accept-Language"] == "de"
    assert seen["url"].endswith("deviceSn=SN1")
    # the whole call shares one 7 s deadline (connect, read): what is left of it, never more
    assert all(6 < t <= 7 for t in calls[0]["timeout"])


@responses.activate
def test_app_id_and_key_are_sent_as_basic_base64():
    responses.get(BASE + PATH, json={"code": 0, "data": {"ppv": 1}, "msg": ""})
    config = parse_config({"atess": {"base_url": BASE, "app_id": "my-id", "app_key": "my-key"},
                           "devices": [{"sn": "SN1", "type": "hps_central"}]})
    AtessClient(config.api).latest(PATH, "SN1")
    sent = responses.calls[0].request.headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"my-id:my-key").decode()


ERRORS = [
    # (response kwargs, exception, outcome)
    (dict(status=401, body="unauthorized"), AuthError, "auth_failed"),
    (dict(json={"code": 403, "data": None, "msg": "No access"}), AuthError, "auth_failed"),
    (dict(status=429, json={"code": 429, "data": None, "msg": "request too frequent"}), RateLimitError, "rate_limited"),
    (dict(json={"code": 429, "data": None, "msg": "too frequent"}), RateLimitError, "rate_limited"),
    (dict(json={"code": 10002, "data": None, "msg": "device does not exist"}), ApiError, "api_error"),
    (dict(json={"code": 0, "data": None, "msg": "ok"}), NoDataError, "no_data"),
    (dict(json={"code": 0, "data": {}, "msg": "ok"}), NoDataError, "no_data"),
    (dict(status=502, body="bad gateway"), HttpError, "http_5xx"),
    (dict(status=404, body="nope"), HttpError, "http_error"),
    (dict(body="<!DOCTYPE html><html><body>maintenance</body></html>"), MalformedResponseError, "html_response"),
    (dict(body='{"code": 0, "data": {"pp'), MalformedResponseError, "invalid_json"),
    (dict(json=["not", "an", "envelope"]), MalformedResponseError, "invalid_response"),
    (dict(json={"code": 0, "data": [1, 2], "msg": ""}), MalformedResponseError, "invalid_response"),
    (dict(body=requests.ConnectionError("refused")), TransportError, "connection_error"),
    (dict(body=requests.ReadTimeout("slow")), TransportError, "timeout"),
]


@pytest.mark.parametrize("reply,error,outcome", ERRORS, ids=[e[2] + str(i) for i, e in enumerate(ERRORS)])
@responses.activate
def test_each_failure_is_a_typed_error_with_its_outcome(reply, error, outcome):
    responses.get(BASE + PATH, **reply)
    observed = []
    with pytest.raises(error) as info:
        client(observed).latest(PATH, "SN1")
    assert info.value.outcome == outcome
    assert observed[0][:2] == (PATH, outcome)
    assert TOKEN not in str(info.value)
    assert PATH in str(info.value), "the error names the endpoint"


def test_unresolvable_host_is_a_dns_error():
    config = parse_config({"atess": {"base_url": "http://no-such-host.invalid", "token": TOKEN, "timeout_seconds": 2},
                           "devices": [{"sn": "SN1", "type": "hps_central"}]})
    with responses.RequestsMock() as mock:  # no network: urllib3's resolver error, replayed
        import socket
        from urllib3.exceptions import NameResolutionError
        err = requests.ConnectionError(NameResolutionError("no-such-host.invalid", None, socket.gaierror(-2, "Name or service not known")))
        mock.get("http://no-such-host.invalid" + PATH, body=err)
        with pytest.raises(TransportError) as info:
            AtessClient(config.api).latest(PATH, "SN1")
    assert info.value.outcome == "dns_error"


def test_connection_refused_on_loopback_is_a_connection_error():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        config = parse_config({"atess": {"base_url": f"http://127.0.0.1:{port}", "token": TOKEN, "timeout_seconds": 2},
                               "devices": [{"sn": "SN1", "type": "hps_central"}]})
        with pytest.raises(TransportError) as info:
            AtessClient(config.api).latest(PATH, "SN1")
    assert info.value.outcome == "connection_error"
    assert TOKEN not in str(info.value)


@responses.activate
def test_success_and_error_codes_are_configurable():
    responses.get(BASE + PATH, json={"code": 1, "data": {"ppv": 1}, "msg": ""})
    assert client(success_codes=[1]).latest(PATH, "SN1") == {"ppv": 1}
    responses.replace(responses.GET, BASE + PATH, json={"code": 10004, "data": None, "msg": "token expired"})
    with pytest.raises(AuthError):
        client(auth_error_codes=[10004]).latest(PATH, "SN1")
