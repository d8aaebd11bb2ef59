"""Work a model replica does for what a request or a model file holds stays bounded, against
the real graph: icon files whose directory lies, a model's runaway chat template, and a
model's generation defaults past the limits."""

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from tests.unit.test_media import icon_bombs, png

IMAGE_MODEL = "tiny/vit"
#: Ten billion loop turns: hours of work for one render.
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"


def test_icon_bombs_and_icns_files_are_fast_400s(http):
    icns = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(icns, "ICNS")
    cases = [(bomb, "inside the icon file is 16000x16000 pixels") for bomb in icon_bombs()]
    assert http.post(f"/models/{IMAGE_MODEL}", content=png()).status_code == 200  # the model is loaded
    for body, message in [*cases, (icns.getvalue(), "this server reads JPEG, PNG")]:
        start = time.perf_counter()
        r = http.post(f"/models/{IMAGE_MODEL}", content=body, headers={"content-type": "image/x-icon"})
        assert r.status_code == 400 and message in r.json()["error"], r.text
        assert time.perf_counter() - start < 30  # a 400 on the icon's headers (decoding it took 6 s and 2 GB)
    assert http.post(f"/models/{IMAGE_MODEL}", content=png(), headers={"x-use-cache": "false"}).status_code == 200


def chat(server, model: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    resp = httpx.post(f"{server.url}/models/{model}/v1/chat/completions", timeout=90,
                      json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2})
    return resp, time.perf_counter() - start


def test_a_runaway_chat_template_fails_its_request_and_the_replica_serves_on(server, http, tiny_models):
    good = tiny_models["text-generation"]
    folder = server.copy_model(good, "hostile/slow-template")
    for f in folder.glob("chat_template*"):
        f.unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": NESTED_LOOPS}))
    for model in ("hostile/slow-template", good):  # both loaded on the text-generation replica
        assert http.post(f"/models/{model}", json={"inputs": "hi", "parameters": {"max_new_tokens": 1}}).status_code == 200
    with ThreadPoolExecutor(2) as pool:
        hostile = pool.submit(chat, server, "hostile/slow-template")
        time.sleep(0.5)
        answered, took = pool.submit(chat, server, good).result()
        refused, refused_took = hostile.result()
    assert answered.status_code == 200, answered.text
    assert took < 30, took  # behind the hostile render for at most its bound (3 s here)
    assert refused.status_code == 400, refused.text
    assert "took more than 3s to render (limits.max_template_seconds)" in refused.json()["error"]
    assert refused_took < 30, refused_took
    assert chat(server, good)[0].status_code == 200


def test_a_models_generation_config_cannot_lift_the_limits(server, http, tiny_models):
    folder = server.copy_model(tiny_models["text-generation"], "hostile/many-beams")
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "num_beams": 40, "num_return_sequences": 40}))
    resp = http.post("/models/hostile/many-beams", json={"inputs": "hello", "parameters": {"max_new_tokens": 2}})
    assert resp.status_code == 200, resp.text
    assert 1 < len(resp.json()) <= 10  # limits.max_return_sequences of the test graph (the default)
