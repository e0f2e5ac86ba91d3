"""The failure drills whose verdict must always hold, each run once (lab/toolkit/drills.py: the
same drill, instrument and verdict that `make bench` repeats for its figures): a web server
stopped, killed or its app killed fails no request; the active balancer's host lost, the
floating IP moves and the stack answers; a planned move of the floating IP and back fails no
request; a primary restart or a replica kill -9 loses no
acknowledged write."""

import pytest

from lab.toolkit.drills import DRILLS, run_drill

pytestmark = pytest.mark.lab
PROVEN = ("nginx_graceful_stop", "web_kill9", "app_kill9", "lb_stop", "lb_handover",
          "replica_kill9", "primary_restart")


@pytest.mark.parametrize("name", PROVEN)
def test_drill_verdict_holds(name):
    result = run_drill(name)
    print(f"\n{DRILLS[name].what}: {result.get('sent')} requests, {result.get('failed')} "
          f"failed, longest gap {result.get('longest_gap_s')} s, whole again after "
          f"{result.get('whole_again_s')} s; repaired afterwards: {result['repaired_afterwards']}")
    assert result["problems"] == []
