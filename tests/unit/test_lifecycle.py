"""The ingress's load tracker (no Ray)."""

import asyncio
from pathlib import Path

import pytest

from deployments.gate import ModelGate
from deployments.load_tracker import BASE_LOAD_S, PRIOR_BYTES_PER_S, ModelKey, ModelTracker
from hubserve.errors import ModelLoadError, ModelLoading
from hubserve.repos.refs import ModelRef


def ref(model_id="o/m", size=200_000_000):
    return ModelRef(model_id=model_id, path=Path("/x"), sha="a" * 40, source="store", size_bytes=size)


def key(task="t", model=None):
    return ModelKey.of(task, model or ref())


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_estimates_come_from_size_then_from_measurements():
    tracker = ModelTracker()
    assert tracker.estimate(ref()) == pytest.approx(BASE_LOAD_S + 200_000_000 / PRIOR_BYTES_PER_S)

    async def scenario():
        await tracker.wait(key(), ref(), _load({"cached": False, "seconds": 0.5}), timeout=5)

    asyncio.run(scenario())
    assert tracker.estimate(ref()) == 0.5
    assert tracker.bytes_per_s == pytest.approx(400_000_000)
    # another model of half the size is now estimated from the measured speed
    assert tracker.estimate(ref("o/other", 100_000_000)) == pytest.approx(BASE_LOAD_S + 0.25)
    assert key() in tracker.loaded


def _load(result, delay=0.0, calls=None, error=None):
    async def load():
        if calls is not None:
            calls.append(1)
        await asyncio.sleep(delay)
        if error:
            raise error
        return result
    return load


def test_concurrent_waiters_share_one_load():
    tracker = ModelTracker()
    calls = []

    async def scenario():
        load = _load({"cached": False, "seconds": 0.1}, delay=0.05, calls=calls)
        await asyncio.gather(*(tracker.wait(key(), ref(), load, timeout=5) for _ in range(20)))

    asyncio.run(scenario())
    assert calls == [1] and key() in tracker.loaded and not tracker.loading


def test_remaining_time_counts_down_while_loading():
    clock = Clock()
    tracker = ModelTracker(clock=clock)
    tracker.load_seconds["o/m"] = 10.0

    async def scenario():
        tracker.start(key(), ref(), _load({"cached": False, "seconds": 10}, delay=0.01))
        clock.now += 4
        remaining = tracker.remaining(key(), ref())
        await asyncio.sleep(0.05)
        return remaining

    assert asyncio.run(scenario()) == pytest.approx(6.0)


def test_a_failed_load_fails_every_waiter_with_an_api_error_and_is_not_loaded():
    tracker = ModelTracker()

    async def scenario():
        load = _load(None, delay=0.02, error=RuntimeError("corrupt"))
        return await asyncio.gather(*(tracker.wait(key(), ref(), load, timeout=5) for _ in range(3)),
                                    return_exceptions=True)

    errors = asyncio.run(scenario())
    assert all(isinstance(e, ModelLoadError) and "corrupt" in str(e) for e in errors)
    assert key() not in tracker.loaded and not tracker.loading


def test_a_slow_load_times_out_but_goes_on():
    tracker = ModelTracker()

    async def scenario():
        with pytest.raises(asyncio.TimeoutError):
            await tracker.wait(key(), ref(), _load({"cached": False, "seconds": 0.2}, delay=0.2), timeout=0.05)
        assert key() in tracker.loading
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert key() in tracker.loaded


# -- where a task's models run ----------------------------------------------------------

class FakeBackend:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_tasks_of_one_process_share_a_backend_until_the_last_lets_go():
    from deployments.loading import LoadedModel, SharedBackends

    shared, made = SharedBackends(), []

    def load():
        made.append(FakeBackend())
        return made[-1]

    model = ref()
    key = (model.revision_id, "base", "auto", "cpu", "float32")
    first = LoadedModel(model, *shared.acquire(key, load)[:1], None)
    first._release = lambda: shared._release(key)
    backend, release = shared.acquire(key, load)
    second = LoadedModel(model, backend, None, release)
    assert second.backend is first.backend and len(made) == 1 and len(shared) == 1
    first.__del__()
    assert not made[0].closed  # the other task still holds it
    second.__del__()
    assert made[0].closed and len(shared) == 0
    shared.acquire(key, load)
    other = shared.acquire((model.revision_id, "masked-lm", "auto", "cpu", "float32"), load)[0]
    assert other is made[2] and len(made) == 3  # another head is another backend


class FakeCall:
    def __init__(self, value):
        self.value = value

    def __await__(self):
        async def done():
            return self.value
        return done().__await__()


class FakeHandle:
    def __init__(self, calls):
        self.calls = calls

    def options(self, **kwargs):
        return self

    def __getattr__(self, method):
        calls = self.calls

        class Method:
            def remote(self, *args):
                calls.append(method)
                return FakeCall({"where": "deployment"} if method == "infer" else {"loaded": True, "cached": False,
                                                                                  "seconds": 0.1})
        return Method()


class FakeLocal:
    def __init__(self, needs_torch):
        self.needs_torch = needs_torch
        self.calls = []

    async def infer(self, item):
        from hubserve.errors import NeedsTorch

        self.calls.append("infer")
        if self.needs_torch:
            raise NeedsTorch("this one needs torch")
        return {"where": "ingress"}

    async def model_status(self, revision_id):
        return {"loaded": False, "failure": None}


def test_an_inline_task_runs_here_unless_the_model_needs_torch():
    from deployments.placement import TaskModels

    remote_calls = []
    model = ref()
    here = TaskModels({"feature-extraction": FakeHandle(remote_calls)}, {"feature-extraction": FakeLocal(False)})
    assert asyncio.run(here.infer("feature-extraction", model, None)) == {"where": "ingress"} and not remote_calls

    local = FakeLocal(True)
    models = TaskModels({"feature-extraction": FakeHandle(remote_calls)}, {"feature-extraction": local})
    for _ in range(2):
        assert asyncio.run(models.infer("feature-extraction", model, None)) == {"where": "deployment"}
    assert local.calls == ["infer"]  # asked once; then the deployment is where this model runs
    assert remote_calls == ["infer", "infer"]
    assert asyncio.run(models.model_status("feature-extraction", model))["loaded"] is True

    alone = TaskModels({}, {"feature-extraction": FakeLocal(True)})
    with pytest.raises(ModelLoadError, match="needs torch"):
        asyncio.run(alone.infer("feature-extraction", model, None))


# -- the gate: the replicas own load state -----------------------------------------------

class FakeModels:
    """Serve's view (``seen``: running replicas, holders) and one replica's answer (``status``)."""

    def __init__(self, seen, loaded=False, failure=None):
        self.seen, self.loaded, self.failure = seen, loaded, failure
        self.hops, self.loads = 0, 0

    def deployed(self, task):
        return True

    def holders(self, task, model):
        return self.seen

    async def model_status(self, task, model):
        self.hops += 1
        return {"loaded": self.loaded, "failure": self.failure}

    async def load_model(self, task, model):
        self.loads += 1
        self.loaded = True
        return {"cached": False, "seconds": 0.01}


def gate_for(models):
    from hubserve.config.app import AppConfig

    return ModelGate(models, AppConfig.model_validate({"cold_start": {"wait_by_default": False}}))


def test_a_model_loaded_here_and_still_held_costs_no_hop():
    models = FakeModels(seen=(2, 1))
    gate = gate_for(models)
    asyncio.run(gate.ready("t", ref(), wait=True, load=None))
    assert models.loads == 1 and key() in gate.tracker.loaded
    hops = models.hops
    for _ in range(5):
        asyncio.run(gate.ready("t", ref(), wait=False, load=None))
    assert models.hops == hops and models.loads == 1
    assert asyncio.run(gate.status("t", ref()))["state"] == "Loaded" and gate.seen_loaded(ref())


def test_once_serve_shows_no_holder_a_no_wait_call_is_503_and_starts_one_load():
    models = FakeModels(seen=(2, 1))
    gate = gate_for(models)
    asyncio.run(gate.ready("t", ref(), wait=True, load=None))
    models.seen, models.loaded = (2, 0), False  # evicted on its replica

    async def no_wait():
        with pytest.raises(ModelLoading) as caught:
            await gate.ready("t", ref(), wait=False, load=None)
        await asyncio.sleep(0.05)
        return caught.value

    error = asyncio.run(no_wait())
    assert error.status_code == 503 and error.extra["estimated_time"] > 0
    assert models.loads == 2  # the no-wait call started one load in the background


def test_with_no_replica_running_nothing_is_asked_and_x_load_model_0_loads_nothing():
    models = FakeModels(seen=(0, 0), loaded=True)  # the replica's answer would be stale: none runs
    gate = gate_for(models)
    with pytest.raises(ModelLoading):
        asyncio.run(gate.ready("t", ref(), wait=False, load=False))
    assert models.hops == 0 and models.loads == 0
    assert asyncio.run(gate.status("t", ref()))["state"] == "Loadable" and models.hops == 0


def test_a_replicas_recent_failure_is_the_answer_wait_or_not():
    models = FakeModels(seen=(1, 0), failure=ModelLoadError("Failed to load model o/m: corrupt"))
    gate = gate_for(models)
    for wait in (True, False):
        with pytest.raises(ModelLoadError, match="corrupt"):
            asyncio.run(gate.ready("t", ref(), wait=wait, load=None))
    assert models.loads == 0  # the back-off is the replica's; the gate does not retry
    assert asyncio.run(gate.status("t", ref()))["state"] == "Error"


def test_without_serves_view_the_gate_asks_a_replica():
    models = FakeModels(seen=None, loaded=True)
    gate = gate_for(models)
    asyncio.run(gate.ready("t", ref(), wait=False, load=None))
    asyncio.run(gate.ready("t", ref(), wait=False, load=None))
    assert models.hops == 2 and models.loads == 0


def test_a_model_over_the_budget_is_refused_before_any_replica_is_asked():
    from hubserve.errors import ModelTooLarge

    models = FakeModels(seen=None)
    gate = gate_for(models)
    big = ref(size=5 * 2**30)
    with pytest.raises(ModelTooLarge, match="too large"):
        asyncio.run(gate.ready("t", big, wait=True, load=None))
    assert asyncio.run(gate.status("t", big))["state"] == "TooBig" and models.hops == 0
