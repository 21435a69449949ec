"""Fuzzing the edge server's input over real HTTP: schemathesis from the OpenAPI spec it serves
(positive and negative cases, with and without credentials), then hypothesis-built frames that get
past the CRC (random codec, level, shape and payload), truncations and bit flips of real frames,
oversized bodies, bad credentials and headers. Every request gets a documented answer (a 200 for a
real frame, else a 4xx with the documented JSON error kind) and the server stays up."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks

from grl_aecnn.data import to_tensor
from grl_aecnn.entropy import pack_frame
from grl_aecnn.runtime.auth import authorization
from grl_aecnn.runtime.config import AuthConfig, EdgeServerConfig
from grl_aecnn.runtime.server import EdgeServer, load_served_codecs
from grl_aecnn.runtime.service import OPENAPI_FILE
from tests.test_runtime import MODEL, SECRET, ServerThread

LIMIT = 16 * 1024
SPEC = yaml.safe_load(OPENAPI_FILE.read_text())
ERROR_KINDS = set(SPEC["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
# The device's operation is served by the device process, not the edge server.
schema = schemathesis.openapi.from_path(OPENAPI_FILE).exclude(path="/v1/task")
FUZZ_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def codecs():
    return load_served_codecs(MODEL, ("aecnn",))


@pytest.fixture(scope="module")
def fuzzed(codecs):
    """A server of its own: the fuzzer sets its load to arbitrary fractions."""
    server = EdgeServer(EdgeServerConfig(max_request_bytes=LIMIT, auth=AuthConfig(token=SECRET)), codecs)
    server.warm_up()
    running = ServerThread(server)
    yield running
    running.close()


@pytest.fixture
def full_capacity(fuzzed):
    """The fuzzed server at full capacity again (the spec fuzzing leaves an arbitrary load, down to
    5e-324, at which a job without a deadline would rightly take forever)."""
    fuzzed.server.available = 1.0
    return fuzzed


@pytest.fixture(scope="module")
def good_frame(codecs):
    return codecs[("aecnn", 1)].encode(to_tensor(np.zeros((1, 32, 32, 3), np.uint8), (0.5,) * 3, (0.25,) * 3)[0])


def assert_documented(response: requests.Response, real_frame: bool = False) -> None:
    """A 200 only for a real frame; otherwise a 4xx/503 with {error, reason} of a documented kind."""
    if response.status_code == 200 and real_frame:
        assert response.json()["status"] in ("ok", "late")
        return
    assert response.status_code in (400, 401, 413, 503), (response.status_code, response.text[:200])
    body = response.json()
    assert body["error"] in ERROR_KINDS and body["reason"], body


# ---- from the OpenAPI spec ----------------------------------------------------------------------------
@schema.parametrize()
@FUZZ_SETTINGS
def test_schemathesis_every_answer_conforms_to_the_spec(case, fuzzed):
    """Generated requests, with valid credentials and without (ignored_auth sends them again
    without): no 5xx, status codes, content types and bodies as documented, invalid input refused."""
    case.call_and_validate(base_url=fuzzed.url, headers={"Authorization": f"Bearer {SECRET}"}, checks=[
        st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
        st_checks.response_schema_conformance, st_checks.negative_data_rejection, st_checks.ignored_auth])


# ---- frames and headers the spec cannot describe --------------------------------------------------------
def post(url: str, body: bytes, headers: dict) -> requests.Response:
    return requests.post(url + "/v1/infer", data=body, headers=headers, timeout=30)


def bearer() -> dict:
    return {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/octet-stream"}


@FUZZ_SETTINGS
@given(level=st.integers(0, 10),
       # Half the time a served level's own shape (C x 16 x 16), so the payload reaches its decoder.
       shape=st.one_of(st.sampled_from([32, 16, 8, 4, 3, 2, 1]).map(lambda c: (c, 16, 16)),
                       st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple)),
       payload=st.binary(max_size=4000), deadline=st.one_of(st.none(), st.floats(-1.0, 30.0)))
def test_frames_with_a_valid_crc_but_random_content_are_refused_cleanly(full_capacity, level, shape, payload,
                                                                       deadline):
    """Past the CRC: the codec's decoder itself must refuse a wrong shape or payload (400
    malformed_frame or unsupported_codec), never crash the worker."""
    headers = bearer()
    if deadline is not None:
        headers["X-Deadline"] = f"{time.time() + deadline:.6f}"
    frame = pack_frame("aecnn", level, shape, payload)
    assert_documented(post(full_capacity.url, frame, headers), real_frame=True)


@FUZZ_SETTINGS
@given(data=st.data())
def test_truncated_flipped_oversized_and_unauthenticated_requests_get_documented_errors(full_capacity, good_frame,
                                                                                         data):
    kind = data.draw(st.sampled_from(["truncated", "flipped", "oversized", "no_auth", "bad_auth", "stale_hmac",
                                      "bad_deadline", "garbage"]))
    body, headers = good_frame, bearer()
    if kind == "truncated":
        body = good_frame[:data.draw(st.integers(0, len(good_frame) - 1))]
    elif kind == "flipped":
        flipped = bytearray(good_frame)
        for i in data.draw(st.lists(st.integers(0, len(good_frame) - 1), min_size=1, max_size=8)):
            flipped[i] ^= data.draw(st.integers(1, 255))
        body = bytes(flipped)
    elif kind == "oversized":
        body = bytes(data.draw(st.integers(LIMIT + 1, 4 * LIMIT)))
    elif kind == "no_auth":
        del headers["Authorization"]
    elif kind == "bad_auth":
        # Printable ASCII, no leading space (the HTTP client refuses those itself), sometimes a bearer.
        token = data.draw(st.from_regex(r"\A[!-~][ -~]{0,80}\Z"))
        headers["Authorization"] = data.draw(st.sampled_from([token, f"Bearer {token}", f"GRL-HMAC-SHA256 {token}"]))
    elif kind == "stale_hmac":
        headers["Authorization"] = authorization("hmac", SECRET, "POST", "/v1/infer", body, now=time.time() - 3600)
    elif kind == "bad_deadline":
        headers["X-Deadline"] = data.draw(st.sampled_from(["soon", "", "nan", "1e", "0x10", "--1"]))
    else:
        body = data.draw(st.binary(max_size=2000))
    response = post(full_capacity.url, body, headers)
    assert_documented(response, real_frame=kind == "flipped")  # a flip may (very rarely) keep the CRC right
    expected = {"truncated": "malformed_frame", "oversized": "too_large", "no_auth": "unauthorized",
                "bad_auth": "unauthorized", "stale_hmac": "unauthorized", "bad_deadline": "bad_header"}
    if kind in expected:
        assert response.json()["error"] == expected[kind]


def test_the_server_still_serves_after_the_fuzzing(full_capacity, good_frame):
    assert requests.get(full_capacity.url + "/healthz", timeout=30).json()["status"] == "ok"
    answer = post(full_capacity.url, good_frame, {**bearer(), "X-Deadline": f"{time.time() + 30:.6f}"}).json()
    assert answer["status"] == "ok", answer
