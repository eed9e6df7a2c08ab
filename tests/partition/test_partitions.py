"""Issue 19: the network splits, under a steady load of submissions.

Every program and server runs in a network namespace of its own (``tests.partition.
cluster``); a cut drops all of one namespace's packets silently until it is healed.
After each cut and heal every accepted task has ended exactly once, no (task, attempt)
was placed twice, and the counts and timings go to the run's summary.
"""

from __future__ import annotations

import re
import time

from tests.e2e.conftest import poll
from tests.partition.cluster import COORDINATORS, LEASE_S, LOST_LEAD, Partitioned
from tests.partition.conftest import Report
from tests.partition.load import Load, since, tally
from tests.processes import Program
from tests.waiting import until

CUT_AFTER = 8
"""Accepted submissions before the cut: the load is flowing."""
MORE_WHILE_CUT = 5
"""Accepted after the cut, before the heal: the cluster kept serving."""
OBSERVED_LATE_S = 0.5
"""How much later than the event a poll of a child's stderr may see its log line."""
LEADS = re.compile(r"(coordinator-\S+) leads from epoch")


async def test_a_cut_off_leader_stops_and_the_standby_leads(
    partitioned: Partitioned, report: Report
) -> None:
    load = Load(partitioned.urls, "lead")
    load.start()
    await load.until_accepted(CUT_AFTER)
    old_name, old = await partitioned.wait_leader()
    new_name = next(name for name in COORDINATORS if name != old_name)
    new = partitioned.topology.coordinators[new_name]
    old_lines, new_lines = len(old.stderr_lines), len(new.stderr_lines)

    partitioned.network.cut(partitioned.member(old_name).role)
    cut_at = time.monotonic()
    before_cut = len(load.accepted)
    why = await until(lambda: logged(old, LOST_LEAD, old_lines), f"{old_name} to stop", 20, 0.05)
    stopped_in = since(cut_at)
    await until(lambda: logged(new, LEADS, new_lines), f"{new_name} to lead", 20, 0.05)
    led_in = since(cut_at)
    # The load goes on through the new leader while the old one is still cut off.
    await load.until_accepted(before_cut + MORE_WHILE_CUT)
    flowing_in = since(cut_at)
    assert (await partitioned.wait_leader())[0] == new_name

    partitioned.network.heal(partitioned.member(old_name).role)
    healed_at = time.monotonic()

    async def standing_by() -> bool:
        status = await partitioned.status()
        standbys = (status or {}).get("standbys") or ()
        return any(f"-{old.proc.pid}-" in one for one in standbys)

    await poll(standing_by, f"{old_name} standing by after the heal")
    back_in = since(healed_at)
    assert (await partitioned.wait_leader())[0] == new_name
    await load.stop()

    counts = await tally(partitioned.urls, ["lead"], load.accepted)
    report(
        f"{old_name} (leader) cut: stopped deciding {stopped_in:.1f} s after the cut ({why}); "
        f"{new_name} led at {led_in:.1f} s; {MORE_WHILE_CUT} more accepted by {flowing_in:.1f} s; "
        f"{old_name} standing by {back_in:.1f} s after the heal; {counts.line()}; "
        f"retried submissions {dict(load.retries)}"
    )
    # Observed through its stderr, polled: a little later than the moment itself.
    assert stopped_in < LEASE_S + OBSERVED_LATE_S, f"{old_name} still led {stopped_in:.1f} s on"
    assert led_in < 2 * LEASE_S + OBSERVED_LATE_S, f"{new_name} led only {led_in:.1f} s on"
    assert counts.duplicates == 0, counts.problems
    assert counts.ended == counts.stored >= counts.accepted, counts.line()
    assert counts.states == {"succeeded": counts.stored}, counts.line()


def logged(child: Program, pattern: re.Pattern[str], after: int) -> str | None:
    """The first group of the first stderr line past ``after`` matching ``pattern``."""
    for line in child.stderr_lines[after:]:
        if match := pattern.search(line):
            return match.group(1)
    return None
