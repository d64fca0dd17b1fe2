"""A unit of work, what a cluster ships: find tickets for a config (a search), or train the
tickets another config found on this one (a transfer), and running it here. The study layer
plans units (lthutils.study); the cluster runs them (lthutils.cluster); neither needs the other.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from lthutils.config import ExperimentConfig
from lthutils.experiments import evaluate_tickets, find_tickets
from lthutils.results import RunStore


@dataclass(frozen=True)
class Unit:
    """Find tickets with `config`, or (with `source`) train the tickets `source` found on `config`."""

    config: ExperimentConfig
    source: ExperimentConfig | None = None

    @property
    def results_path(self) -> Path:
        source_id = None if self.source is None else self.source.run_id()
        return RunStore.of(self.config, source_id).results_path

    def tickets(self) -> Path:
        return RunStore.of(self.source or self.config).ticket_dir

    def run(self) -> None:
        if self.source is None:
            find_tickets(self.config)
        else:
            evaluate_tickets(self.tickets(), self.config)

    def for_seeds(self, seeds: tuple[int, ...]) -> Unit:
        """The part of this unit that these seeds need: a cluster's task."""
        return Unit(dataclasses.replace(self.config, seeds=tuple(seeds)), self.source)

    def absolute(self) -> Unit:
        """This unit with absolute folders, to run where the working directory differs (a worker)."""

        def absolute(config: ExperimentConfig) -> ExperimentConfig:
            folders = {name: os.path.abspath(getattr(config, name)) for name in ("exp_root", "model_root")}
            data_root = None if config.data_root is None else os.path.abspath(config.data_root)
            return dataclasses.replace(config, data_root=data_root, **folders)

        return Unit(absolute(self.config), None if self.source is None else absolute(self.source))

    def relocated(self, exp_root: str, model_root: str) -> Unit:
        """This unit writing to (and reading tickets from) other roots."""
        source = None if self.source is None else dataclasses.replace(self.source, model_root=model_root)
        return Unit(dataclasses.replace(self.config, exp_root=exp_root, model_root=model_root), source)

    def describe(self) -> str:
        """What the unit does, by run id, for a progress line or an error."""
        seeds = ",".join(map(str, self.config.seeds))
        if self.source is None:
            return f"{self.config.name}: search {self.config.run_id()} seeds {seeds}"
        run = self.results_path.parent.name
        return f"{self.config.name}: tickets of {self.source.run_id()} trained as {run} seeds {seeds}"
