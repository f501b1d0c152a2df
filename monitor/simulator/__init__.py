"""A local stand-in for the Tencent TRTC recording API (Version 2019-07-22).

Used by the tests, the demo and users' own integration tests; the daemon never imports it.
Importing this package has no side effects: nothing listens until ``Simulator.start``.
"""

from __future__ import annotations

from monitor.simulator.arrivals import Arrival, ArrivalLog, max_in_window
from monitor.simulator.callbacks import CallbackSettings, sign
from monitor.simulator.clock import Clock, ManualClock, SystemClock
from monitor.simulator.control import ControlError, SimulatorControl
from monitor.simulator.faults import Fault, FaultKind
from monitor.simulator.lifecycle import Life, LifeRange, Phase
from monitor.simulator.protocol import ENDED_CODES, VERSION
from monitor.simulator.scenario import (
    Credential,
    Scenario,
    ScenarioError,
    TaskSpec,
    load_scenario,
    parse_scenario,
)
from monitor.simulator.server import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Simulator
from monitor.simulator.standalone import serve
from monitor.simulator.threaded import ThreadedSimulator

__all__ = [
    "DEFAULT_SECRET_ID",
    "DEFAULT_SECRET_KEY",
    "ENDED_CODES",
    "VERSION",
    "Arrival",
    "ArrivalLog",
    "CallbackSettings",
    "Clock",
    "ControlError",
    "Credential",
    "Fault",
    "FaultKind",
    "Life",
    "LifeRange",
    "ManualClock",
    "Phase",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "SimulatorControl",
    "SystemClock",
    "TaskSpec",
    "ThreadedSimulator",
    "load_scenario",
    "max_in_window",
    "parse_scenario",
    "serve",
    "sign",
]
