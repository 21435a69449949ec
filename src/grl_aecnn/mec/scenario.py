"""Scenario configs (YAML, validated with pydantic). Units are in the field names; defaults are
documented in docs/system-model.md."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator

from grl_aecnn.config import StrictModel
from grl_aecnn.errors import ConfigError


class LayoutConfig(StrictModel):
    area_m: float = Field(400.0, gt=0)  # side of the square area
    es_layout: Literal["grid", "random"] = "grid"
    min_distance_m: float = Field(10.0, ge=0)  # path loss uses at least this 2-D MD-ES distance (MDs stay put)


class MobilityConfig(StrictModel):
    model: Literal["static", "random_waypoint"] = "static"
    speed_min_mps: float = Field(0.5, ge=0)
    speed_max_mps: float = Field(1.5, ge=0)

    @model_validator(mode="after")
    def _speeds(self):
        if self.speed_max_mps < self.speed_min_mps:
            raise ValueError("speed_max_mps < speed_min_mps")
        return self


class ChannelConfig(StrictModel):
    carrier_ghz: float = Field(3.5, gt=0)
    es_height_m: float = Field(10.0, gt=0)  # 3GPP TR 38.901 UMi-street canyon BS height
    md_height_m: float = Field(1.5, gt=0)
    noise_psd_dbm_hz: float = -174.0
    noise_figure_db: float = Field(9.0, ge=0)
    shadowing_los_db: float = Field(4.0, ge=0)  # TR 38.901 Table 7.4.1-1, UMi LOS
    shadowing_nlos_db: float = Field(7.82, ge=0)  # UMi NLOS
    shadow_decorrelation_m: float = Field(10.0, gt=0)  # TR 38.901 Table 7.5-6 (UMi LOS 10 m)
    rician_k_los_db: float = 9.0  # TR 38.901 Table 7.5-6, UMi LOS K-factor mean
    doppler_floor_hz: float = Field(2.0, ge=0)  # scatterer motion seen by static MDs
    csi_error_var: float = Field(0.1, ge=0, le=1)  # normalised estimation error variance epsilon^2
    csi_outdated: bool = False  # decisions see the previous slot's (estimated) small-scale fading


class EdgeConfig(StrictModel):
    bandwidth_hz: float = Field(10e6, gt=0)  # per ES, shared OFDMA-style
    capacity_flops: float = Field(50e9, gt=0)  # per ES, FLOP/s
    load_available: tuple[float, ...] = (0.9, 0.6, 0.3)  # available fraction in each background-load state
    load_stay_prob: float = Field(0.9, ge=0, le=1)  # Markov chain: stay, else move to a uniformly drawn other state
    load_estimate_std: float = Field(0.05, ge=0)  # observed fraction = previous slot's true one + N(0, std^2)

    @model_validator(mode="after")
    def _states(self):
        if not self.load_available or any(not 0 < a <= 1 for a in self.load_available):
            raise ValueError("load_available needs fractions in (0, 1]")
        return self


class DeviceClass(StrictModel):
    name: str
    share: float = Field(gt=0)  # fraction of MDs of this class (normalised over classes)
    cpu_hz: float = Field(gt=0)  # DVFS operating frequency
    flops_per_cycle: float = Field(gt=0)
    kappa: float = Field(gt=0)  # effective switched capacitance: energy per cycle = kappa * cpu_hz^2


class DeviceConfig(StrictModel):
    p_max_w: float = Field(0.2, gt=0)  # 23 dBm
    energy_budget_j: float = Field(0.008, gt=0)  # E_max per task: device compute + transmit energy
    classes: tuple[DeviceClass, ...] = Field(min_length=1, default=(
        DeviceClass(name="low", share=0.4, cpu_hz=0.8e9, flops_per_cycle=1.0, kappa=5e-29),
        DeviceClass(name="mid", share=0.4, cpu_hz=1.5e9, flops_per_cycle=2.0, kappa=5e-29),
        DeviceClass(name="high", share=0.2, cpu_hz=2.2e9, flops_per_cycle=4.0, kappa=5e-29),
    ))


class TaskConfig(StrictModel):
    arrival_prob: float = Field(1.0, ge=0, le=1)  # Bernoulli arrivals, one task at most per MD per slot
    deadline_dist: Literal["uniform", "fixed"] = "uniform"
    deadline_min_ms: float = Field(30.0, gt=0)
    deadline_max_ms: float = Field(100.0, gt=0)

    @model_validator(mode="after")
    def _deadline(self):
        if self.deadline_max_ms < self.deadline_min_ms:
            raise ValueError("deadline_max_ms < deadline_min_ms")
        return self


class Scenario(StrictModel):
    name: str = "default"
    n_md: int = Field(10, ge=1)
    n_es: int = Field(3, ge=1)
    slot_s: float = Field(0.1, gt=0)
    failure_penalty: float = Field(0.5, ge=0)  # psi: reward lost per failed task
    episode_slots: int = Field(200, ge=1)  # gymnasium episode length
    layout: LayoutConfig = LayoutConfig()
    mobility: MobilityConfig = MobilityConfig()
    channel: ChannelConfig = ChannelConfig()
    edge: EdgeConfig = EdgeConfig()
    device: DeviceConfig = DeviceConfig()
    tasks: TaskConfig = TaskConfig()

    def replaced(self, **fields) -> Scenario:
        """A copy with these top-level fields changed, validated again (`model_copy` checks nothing)."""
        try:
            return Scenario.model_validate({**self.model_dump(), **fields})
        except ValidationError as exc:
            raise ConfigError(f"scenario {self.name!r} with {fields}: {exc}") from exc
