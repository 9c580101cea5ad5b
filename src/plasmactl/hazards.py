"""The hazards this controller is built against, numbered, each with the rules that cover it.

docs/safety.md explains each one (harm, cause, what covers it in software and outside it, the tests and
the measured reaction times). A test fails when a rule of the controller's enum covers no hazard, when a
hazard has no test that carries its marker (``@pytest.mark.hazard("H3")``), or when docs/safety.md does not
name a hazard with its title.
"""

from __future__ import annotations

from dataclasses import dataclass

from plasmactl.controller.trips import Rule


@dataclass(frozen=True)
class Hazard:
    id: str
    title: str
    rules: tuple[Rule, ...]  # the trip rules that cover it (none: covered before a session starts)


HAZARDS: tuple[Hazard, ...] = (
    Hazard(
        "H1",
        "a pulse not cooled in time (thermal injury)",
        (
            Rule.COOLING_NOT_CONFIRMED,
            Rule.COOLING_WINDOW_UNREACHABLE,
            Rule.SPRAY_FLOW_LOST,
            Rule.RESERVOIR_LOW,
            Rule.SPRAY_STATUS_STALE,
        ),
    ),
    Hazard(
        "H2",
        "emission while the operator has stopped it (E-stop, footswitch) or while those inputs are unknown",
        (Rule.ESTOP, Rule.FOOTSWITCH_RELEASED, Rule.SAFETY_INPUTS_STALE),
    ),
    Hazard(
        "H3",
        "emission with the handpiece off the skin or at the wrong distance",
        (Rule.TIP_OUT_OF_WINDOW, Rule.TIP_IMPLAUSIBLE),
    ),
    Hazard(
        "H4",
        "skin overheated by accumulated heat, or an unknown skin temperature",
        (
            Rule.SKIN_TEMP_LIMIT,
            Rule.SKIN_TEMP_HARD_LIMIT,
            Rule.THERMOMETER_STALE,
            Rule.THERMOMETER_IMPLAUSIBLE,
            Rule.THERMOMETER_STUCK,
        ),
    ),
    Hazard(
        "H5",
        "a pulse delivering more than its setting (drift, stuck-on output, emission nobody commanded)",
        (Rule.ENERGY_OUT_OF_TOLERANCE, Rule.PULSE_OVERRUN, Rule.UNEXPECTED_OUTPUT),
    ),
    Hazard("H6", "a spot given more than its plan (a cut pulse fired again, a repeated spot)", (Rule.DOSE_LIMIT,)),
    Hazard(
        "H7",
        "the generator out of the controller's control (link lost, device fault, silent device)",
        (Rule.PLASMA_STATUS_STALE, Rule.DEVICE_NO_REPLY, Rule.DEVICE_WATCHDOG, Rule.DEVICE_FAULT),
    ),
    Hazard("H8", "a treatment recorded as given that was not (a pulse that never came)", (Rule.PULSE_NOT_DELIVERED,)),
    Hazard("H9", "a session or a pause that goes on past its limits", (Rule.SESSION_TIME_EXCEEDED, Rule.PAUSE_TIMEOUT)),
    Hazard(
        "H10",
        "water that does not stop (a valve stuck open: cold injury, water near the eyes)",
        (Rule.VALVE_NOT_CLOSED,),
    ),
    Hazard(
        "H11",
        "a start, a shutdown or a software failure that leaves the generator armed or on",
        (Rule.SELF_TEST_FAILED, Rule.CONTROLLER_ERROR),
    ),
    Hazard("H12", "a plan or rig file that asks for something other than what was meant (units, typos, caps)", ()),
    Hazard("H13", "two controllers on one generator, or a reply taken for another request's answer", ()),
    Hazard("H14", "a record that is incomplete, or changed after the session", ()),
    Hazard(
        "H15",
        "an operator's plan edit racing the machine's set-up, or applied by halves (the Therac-25 lesson)",
        (Rule.DEVICE_FAULT,),
    ),
)

BY_ID = {h.id: h for h in HAZARDS}


def hazards_of(rule: Rule) -> list[Hazard]:
    return [h for h in HAZARDS if rule in h.rules]
