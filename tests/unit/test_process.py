"""The stop of `hubserve serve` (hubserve.cli.process), in a process of its own (a server's stop acts
on its own process tree): it finds by the process tree what carries no tag (a process started
with an environment of its own), and ends it whatever signals it ignores."""

import json
import subprocess
import sys

import pytest

from hubserve.cli.process import alive

STOPS = """
import json, subprocess, time
from hubserve.cli.process import become_subreaper, descendants, stop_all
become_subreaper()
# A child that ignores SIGTERM and leaves a grandchild in a session of its own, none tagged.
subprocess.Popen(["sh", "-c", "trap '' TERM; setsid sh -c 'trap \\"\\" TERM; sleep 1000' & sleep 1000"],
                 env={"PATH": "/usr/bin:/bin"})
deadline = time.monotonic() + 20
while len(descendants()) < 3 and time.monotonic() < deadline:
    time.sleep(0.05)
before = descendants()
left = stop_all("no-such-tag", grace_s=2)
print(json.dumps({"before": before, "left": left}))
"""


@pytest.mark.timeout(60)
def test_the_stop_ends_every_process_started_tagged_or_not():
    done = subprocess.run([sys.executable, "-c", STOPS], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert len(result["before"]) >= 3 and result["left"] == []
    assert not any(alive(pid) for pid in result["before"])
