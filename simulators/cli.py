"""``kiemdich sim …``: the simulators that stand in for people, cameras and a city."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sim`` group with one subcommand per simulator."""
    from simulators import city, population
    from simulators.gatecam import cli as gatecam_cli

    sim = sub.add_parser("sim", help="simulators: population registry, gate camera, city traffic")
    sim_sub = sim.add_subparsers(dest="sim_cmd", required=True, metavar="<simulator>")
    population.register(sim_sub)
    gatecam_cli.register(sim_sub)
    city.register(sim_sub)
