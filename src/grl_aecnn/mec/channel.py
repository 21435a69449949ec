"""Radio model: 3GPP TR 38.901 UMi-street canyon path loss and LOS probability, log-normal
shadowing (Gudmundson-correlated along the MD's path), Gauss-Markov small-scale fading with Jakes
correlation (Rician on LOS links, Rayleigh otherwise), imperfect CSI, Shannon rate."""

from __future__ import annotations

import numpy as np
from scipy.special import j0, lambertw

from grl_aecnn.mec.scenario import ChannelConfig

LIGHT_SPEED = 299_792_458.0
LN2 = np.log(2.0)
HALLEY_MIN_SIZE = 150  # `log_root`: measured crossover of its ~40 NumPy calls against one scipy call


def los_probability(d2d_m: np.ndarray) -> np.ndarray:
    """TR 38.901 Table 7.4.2-1, UMi-street canyon."""
    d = np.maximum(d2d_m, 1e-9)
    return np.where(d <= 18.0, 1.0, 18.0 / d + np.exp(-d / 36.0) * (1.0 - 18.0 / d))


def path_loss_db(d2d_m: np.ndarray, los: np.ndarray, cfg: ChannelConfig) -> np.ndarray:
    """TR 38.901 Table 7.4.1-1 UMi-street canyon, without the LOS breakpoint: PL1 at every distance;
    NLOS is max(PL_LOS, PL'_NLOS). A simplification: the breakpoint d'_BP = 4 h'_BS h'_UT f_c / c is
    about 210 m at the default 3.5 GHz (and grows with f_c), so the few LOS links beyond it (P_LOS is
    5-9% there) get up to about 3 dB too little loss at 400 m."""
    d3d = np.sqrt(d2d_m**2 + (cfg.es_height_m - cfg.md_height_m) ** 2)
    fc = cfg.carrier_ghz
    pl_los = 32.4 + 21.0 * np.log10(d3d) + 20.0 * np.log10(fc)
    pl_nlos = 22.4 + 35.3 * np.log10(d3d) + 21.3 * np.log10(fc) - 0.3 * (cfg.md_height_m - 1.5)
    return np.where(los, pl_los, np.maximum(pl_los, pl_nlos))


def noise_psd_w_hz(cfg: ChannelConfig) -> float:
    return 10 ** ((cfg.noise_psd_dbm_hz + cfg.noise_figure_db - 30.0) / 10.0)


def fading_correlation(speed_mps: np.ndarray, slot_s: float, cfg: ChannelConfig) -> np.ndarray:
    """Jakes: rho = J0(2 pi f_D T), f_D = max(v f_c / c, floor)."""
    f_d = np.maximum(speed_mps * cfg.carrier_ghz * 1e9 / LIGHT_SPEED, cfg.doppler_floor_hz)
    return j0(2.0 * np.pi * f_d * slot_s)


def complex_normal(rng: np.random.Generator, shape) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)


def shannon_rate(bandwidth_hz, power_w, gain, n0):
    """bits/s; 0 where bandwidth is 0."""
    bw = np.asarray(bandwidth_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(bw > 0, power_w * gain / (n0 * np.where(bw > 0, bw, 1.0)), 0.0)
        return np.where(bw > 0, bw * np.log2(1.0 + snr), 0.0)


def min_bandwidth_for_rate(rate_bps, snr_per_hz):
    """Smallest W with W log2(1 + a / W) >= R (a = P g / N0, in Hz): W = a / (y - 1), y > 1 the root
    of ln(y) = k (y - 1), k = R ln 2 / a (`log_root`). Returns inf where R >= a / ln 2 (the rate is
    unreachable at this power)."""
    rate = np.asarray(rate_bps, dtype=float)
    a = np.asarray(snr_per_hz, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = rate * LN2 / a  # ln(1+x)/x = k, x = a/W
        ok = (k > 0) & (k < 1)
        w = a / np.maximum(log_root(np.where(ok, k, 0.5)) - 1.0, 1e-300)
    return np.where(rate <= 0, 0.0, np.where(ok, w, np.inf))


def log_root(k: np.ndarray) -> np.ndarray:
    """The root y > 1 of ln(y) = k (y - 1) for 0 < k < 1, i.e. y = -W_-1(-k e^-k) / k with W_-1 the
    lower real branch of Lambert W, in real arithmetic: the branch-point series (k > 0.3) or the
    asymptotic expansion (small k) start within 9%, and two Halley steps (cubic) bring y - 1 within
    1e-10 of scipy's complex `lambertw`, 2-4x faster; the planner and the allocator call it for
    every (MD, ES, option) row of every slot. Within 1e-3 of k = 1 the series alone is used: it is
    accurate there (error O((1 - k)^5)) while Halley's steps, and scipy, lose precision at the branch
    point. Below HALLEY_MIN_SIZE values scipy's single call is the faster one (the allocator's per-ES
    arrays)."""
    z = -k * np.exp(-k)
    # series in p at the branch point z = -1/e; 1 + e z computed without cancellation
    p = -np.sqrt(2.0 * -np.expm1(np.log(k) + 1.0 - k))
    near = -1.0 + p * (1.0 - p * (1.0 / 3.0 - p * (11.0 / 72.0 - p * 43.0 / 540.0)))
    if k.size < HALLEY_MIN_SIZE:
        return -np.where(k > 0.999, near, lambertw(z, -1).real) / k
    l1 = np.log(-z)
    l2 = np.log(-l1)
    w = np.where(k > 0.3, near, l1 - l2 + l2 / l1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(2):
            ew = np.exp(w)
            f = w * ew - z
            w = w - f / (ew * (w + 1.0) - (w + 2.0) * f / (2.0 * w + 2.0))
    return -np.where(k > 0.999, near, w) / k
