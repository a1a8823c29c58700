"""The `anomalies:` section of tether.yaml: thresholds of the behavioural anomaly rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tether.policy.engine import _Window
from tether.policy.models import DAYS, Day, Hours

AnomalyKind = Literal[
    "new_route", "new_host", "volume_spike", "off_hours", "downscope_burst", "agent_supplied_credential"
]


class BusinessHours(BaseModel):
    """The window in which the agent is expected to work; calls outside it are `off_hours`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field("UTC", description="IANA time zone, e.g. Europe/Berlin.")
    days: list[Day] = Field(default=list(DAYS), min_length=1, description="Days the window starts on.")
    start: str = Field(description='Start, "HH:MM" (quoted), inclusive.')
    end: str = Field(description='End, "HH:MM" (quoted), exclusive; before start means overnight.')

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError('write times in quotes, e.g. "19:00" (YAML reads an unquoted 19:00 as a number)')
        return value

    @model_validator(mode="after")
    def _valid(self) -> BusinessHours:
        self.hours()  # the policy's `hours` rules: known time zone, HH:MM, start != end
        return self

    def hours(self) -> Hours:
        return Hours(timezone=self.timezone, days=self.days, start=self.start, end=self.end, outside="flag")

    def contains(self, when: datetime) -> bool:
        return _Window.of(self.hours()).contains(when)


class AnomalySettings(BaseModel):
    """Behavioural baselines and the anomaly rules compared against them (README "Investigate")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Compare calls with the agent's baseline while it runs.")
    learning_runs: int = Field(
        5, ge=1, le=10_000, description="Runs (with at least one call) learned before baseline rules flag."
    )
    volume_factor: float = Field(
        2.0, ge=1.0, description="volume_spike: a run's calls above this times the most in any prior run."
    )
    volume_min_calls: int = Field(20, ge=1, description="volume_spike: never below this many calls in a run.")
    hours_tolerance: int = Field(
        1, ge=0, le=11, description="off_hours: UTC hours this close to a learned hour count as usual."
    )
    business_hours: BusinessHours | None = Field(
        None, description="off_hours also flags calls outside this window (from the first run on)."
    )
    downscope_burst: int = Field(
        5, ge=1, description="downscope_burst: more than this many downscoping events within the window."
    )
    downscope_window_seconds: int = Field(900, ge=1, le=86_400)
    ignore: list[AnomalyKind] = Field(default=[], description="Anomaly kinds never flagged.")
