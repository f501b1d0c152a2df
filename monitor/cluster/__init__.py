"""Several replicas on one Redis (docs/high-availability.md): who is alive, who owns which task,
and the
feed that carries registrations and callbacks to the owner.

* :mod:`monitor.cluster.hashing` (pure): rendezvous hashing of task keys over live replicas,
  and what a membership change gains and loses for one replica, most overdue first;
* :mod:`monitor.cluster.membership`: heartbeats into a sorted set on Redis's clock, the live
  set, and a callback when it changes;
* :mod:`monitor.cluster.feed`: a pub/sub change feed between replicas.
"""

from monitor.cluster.hashing import (
    MONITOR_KEY,
    Handover,
    assign,
    handover,
    owner,
    takeover_order,
    weight,
)

__all__ = ["MONITOR_KEY", "Handover", "assign", "handover", "owner", "takeover_order", "weight"]
