"""The ingress's load tracker (no Ray)."""

import asyncio
from pathlib import Path

import pytest

from hubserve.errors import ModelLoadError
from hubserve.store import ModelRef
from serve_app.lifecycle import BASE_LOAD_S, PRIOR_BYTES_PER_S, ModelTracker


def ref(model_id="o/m", size=200_000_000):
    return ModelRef(model_id=model_id, path=Path("/x"), sha="a" * 40, source="store", size_bytes=size)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_estimates_come_from_size_then_from_measurements():
    tracker = ModelTracker()
    assert tracker.estimate(ref()) == pytest.approx(BASE_LOAD_S + 200_000_000 / PRIOR_BYTES_PER_S)

    async def scenario():
        await tracker.wait("t|a", ref(), _load({"cached": False, "seconds": 0.5}), timeout=5)

    asyncio.run(scenario())
    assert tracker.estimate(ref()) == 0.5
    assert tracker.bytes_per_s == pytest.approx(400_000_000)
    # another model of half the size is now estimated from the measured speed
    assert tracker.estimate(ref("o/other", 100_000_000)) == pytest.approx(BASE_LOAD_S + 0.25)
    assert "t|a" in tracker.loaded


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
        await asyncio.gather(*(tracker.wait("t|k", ref(), load, timeout=5) for _ in range(20)))

    asyncio.run(scenario())
    assert calls == [1] and "t|k" in tracker.loaded and not tracker.loading


def test_remaining_time_counts_down_while_loading():
    clock = Clock()
    tracker = ModelTracker(clock=clock)
    tracker.load_seconds["o/m"] = 10.0

    async def scenario():
        tracker.start("t|k", ref(), _load({"cached": False, "seconds": 10}, delay=0.01))
        clock.now += 4
        remaining = tracker.remaining("t|k", ref())
        await asyncio.sleep(0.05)
        return remaining

    assert asyncio.run(scenario()) == pytest.approx(6.0)


def test_failures_are_reported_during_the_back_off_only():
    clock = Clock()
    tracker = ModelTracker(retry_failed_after_s=30, clock=clock)

    async def scenario():
        with pytest.raises(ModelLoadError, match="corrupt"):
            await tracker.wait("t|k", ref(), _load(None, error=ModelLoadError("corrupt")), timeout=5)

    asyncio.run(scenario())
    assert isinstance(tracker.failure("t|k"), ModelLoadError)
    clock.now += 31
    assert tracker.failure("t|k") is None


def test_a_slow_load_times_out_but_goes_on():
    tracker = ModelTracker()

    async def scenario():
        with pytest.raises(asyncio.TimeoutError):
            await tracker.wait("t|k", ref(), _load({"cached": False, "seconds": 0.2}, delay=0.2), timeout=0.05)
        assert "t|k" in tracker.loading
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert "t|k" in tracker.loaded


# -- where a task's models run ----------------------------------------------------------

class FakeBackend:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_tasks_of_one_process_share_a_backend_until_the_last_lets_go():
    from deployments.model_server import LoadedModel, SharedBackends

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
        from deployments.model_server import NeedsTorch

        self.calls.append("infer")
        if self.needs_torch:
            raise NeedsTorch("this one needs torch")
        return {"where": "ingress"}

    async def model_status(self, revision_id):
        return {"loaded": False, "failed": False}


def test_an_inline_task_runs_here_unless_the_model_needs_torch():
    from serve_app.lifecycle import TaskModels

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
