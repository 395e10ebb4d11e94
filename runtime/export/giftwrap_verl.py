"""giftwrap's objectives that verl lacks, as a verl plugin: GIFT, UNA and online DPO.

The math is docs/objectives.md's, and these functions agree with runtime/rl/objectives/*.ts to
float32 precision (tests/runtime/export/verl_plugin_test.ts). Importing this module needs only the
standard library and torch; when verl is importable it also registers, idempotently, with verl's
own registries (verl.trainer.ppo.core_algos):

  advantage estimators (algorithm.adv_estimator):
    "gift"          Â_i = (r_i − mean_g r)/(std_g r + ε), sample std, ε from the settings (1e-6);
                    a group of one: Â_i = r_i; equal rewards: Â_i = 0. Groups come from the `index`
                    (uid) array verl passes; they need not be consecutive here.
    "giftwrap_raw"  the raw reward r_i, for the losses that need it (UNA, online DPO).
    Both return (A, A) with A = scalar × response_mask, [B, T], as verl's estimators do.

  policy losses (actor_rollout_ref.actor.policy_loss.loss_mode), verl's PolicyLossFn signature
  (old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights):
    "gift"                  L = mean_i (Â_i − β_c·ũ_i)², ũ = (u − m_g)/(s_g + ε) with m_g, s_g the
                            mean and sample std of u.detach() over each group (a group of one:
                            ũ = 0); Â_i read from `advantages` at the first response token.
    "giftwrap_una"          L = mean_i (σ(β·u_i) − σ(r_i))², r_i from "giftwrap_raw".
    "giftwrap_online_dpo"   L = mean over pairs of −log σ(β·(u_c − u_r)), in each group the best
                            (c) against the worst (r) by r_i from "giftwrap_raw", first among
                            equals; a group whose rewards are all equal gives no pair.
    u_i = Σ_t mask·(log π − log π_ref): with reference "rollout", π_ref is π_old (`old_log_prob`,
    the GIFT author's form, verl PR 4933); with reference "initial", π_ref is the frozen initial
    policy (`ref_log_prob`, below). `loss_agg_mode` and `rollout_is_weights` are not used: these
    losses are per sequence, and no importance weight enters them.

Groups inside a micro-batch: rows of a group must be consecutive, G rows each (G = the settings'
`groupSize`, else config.rollout_n). A micro-batch whose rows are not a multiple of G raises
ValueError. verl keeps a group's rows together only with trainer.balance_batch=false,
actor_rollout_ref.actor.use_dynamic_bsz=false, actor_rollout_ref.actor.shuffle=false and
ppo_micro_batch_size_per_gpu a multiple of G (verlObjective() in verl_objective.ts emits them).

Aggregation: a loss is a mean over rows. When verl gives config.global_batch_info (its engine
workers do: dp_size and global_batch_size, the rows of the whole mini-batch), a micro-batch returns
Σ_rows ℓ / global_batch_size · dp_size, verl's convention for "seq-mean" modes, so that the summed
micro-batches averaged over data-parallel ranks give the mean over the mini-batch. Online DPO then
divides by the mini-batch's groups (global_batch_size / G) instead of its pairs, which it cannot
count: groups without a pair weigh 0 instead of being left out of the mean.

How ref_log_prob reaches the loss (reference "initial"). verl calls a policy loss without
ref_log_prob. The one function that holds both is verl.workers.utils.losses.ppo_loss(config,
model_output, data, ...) of the engine workers (trainer.use_v1): it reads data["ref_log_prob"],
present when the trainer computed reference log-probs, which it does when
actor_rollout_ref.actor.use_kl_loss=true; kl_loss_coef=0 then makes verl's own KL term exactly 0.
Registration wraps ppo_loss (and the name engine_workers imported, if that module is loaded
already; ActorRolloutRefWorker.init_model builds its partial(ppo_loss, ...) after model config
import has imported actor_rollout_ref.model.external_lib, so it gets the wrapper). The wrapper
puts data's padded ref_log_prob in a context variable for the duration of the call and calls the
original unchanged; the losses read it from there. Nothing else in verl is modified. The legacy
workers (dp_actor.py) are not wrapped: with them, reference "initial" raises a clear error.

Which process imports this module: the workers import actor_rollout_ref.model.external_lib
(emitted as giftwrap_verl), which registers the losses where they run. The advantage estimator
runs in the trainer's driver process: `import verl` there imports the comma-separated modules of
the environment variable VERL_USE_EXTERNAL_MODULES, so the launcher sets
VERL_USE_EXTERNAL_MODULES=giftwrap_verl and puts this directory on PYTHONPATH (or Ray's
runtime_env working_dir) for every process.

Settings: a JSON object in giftwrap_verl.json beside this file, or at the path in the environment
variable GIFTWRAP_VERL_SETTINGS. Every field is optional; unknown fields are refused:
  {
    "format": "giftwrap.verl/1",
    "reference": "rollout" | "initial",   default "rollout"
    "groupSize": integer >= 1,             default config.rollout_n
    "betaC": number > 0,                   GIFT's β_c, default 1
    "stdEpsilon": number > 0,              GIFT's ε on both standard deviations, default 1e-6
    "unaBeta": number > 0,                 UNA's sigmoid temperature, default 0.03
    "dpoBeta": number > 0,                 online DPO's temperature, default 0.1
    "plan": string                         the exported plan's hash (informational)
  }

Deliberately left out: no ratio, clipping, KL or entropy term in these losses (verl adds its own
KL and entropy terms only when configured: the export sets kl_loss_coef=0 and entropy_coeff=0).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import math
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional

import torch

SETTINGS_FORMAT = "giftwrap.verl/1"
SETTINGS_FILE = "giftwrap_verl.json"
SETTINGS_ENV = "GIFTWRAP_VERL_SETTINGS"

DEFAULT_SETTINGS: dict[str, Any] = {
    "format": SETTINGS_FORMAT,
    "reference": "rollout",
    "groupSize": None,
    "betaC": 1.0,
    "stdEpsilon": 1e-6,
    "unaBeta": 0.03,
    "dpoBeta": 0.1,
    # The hash of the plan the export was made from: informational, checked by nothing.
    "plan": None,
}

_POSITIVE = ("betaC", "stdEpsilon", "unaBeta", "dpoBeta")

# data["ref_log_prob"] of the ppo_loss call in progress, padded [B, T]; None outside one.
_REFERENCE: contextvars.ContextVar[Optional[torch.Tensor]] = contextvars.ContextVar(
    "giftwrap_verl_reference", default=None
)


# ---------------------------------------------------------------------------------------------
# Settings


def check_settings(raw: Any, where: str = SETTINGS_FILE) -> dict[str, Any]:
    """The settings `raw` with defaults filled in; ValueError naming the field when one is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in raw:
        if key not in DEFAULT_SETTINGS:
            known = ", ".join(DEFAULT_SETTINGS)
            raise ValueError(f"{where}: unknown field '{key}' (known: {known})")
    settings = {**DEFAULT_SETTINGS, **raw}
    if settings["format"] != SETTINGS_FORMAT:
        raise ValueError(f"{where}: 'format' must be '{SETTINGS_FORMAT}', got {settings['format']!r}")
    if settings["reference"] not in ("rollout", "initial"):
        raise ValueError(
            f"{where}: 'reference' must be 'rollout' or 'initial', got {settings['reference']!r}"
        )
    group = settings["groupSize"]
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
        raise ValueError(f"{where}: 'groupSize' must be an integer >= 1, got {group!r}")
    if settings["plan"] is not None and not isinstance(settings["plan"], str):
        raise ValueError(f"{where}: 'plan' must be a string, got {settings['plan']!r}")
    for key in _POSITIVE:
        value = settings[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{where}: '{key}' must be a number > 0, got {value!r}")
        settings[key] = float(value)
    return settings


def settings_path() -> Path:
    """Where the settings are read from: $GIFTWRAP_VERL_SETTINGS, else giftwrap_verl.json here."""
    override = os.environ.get(SETTINGS_ENV)
    return Path(override) if override else Path(__file__).with_name(SETTINGS_FILE)


@functools.lru_cache(maxsize=8)
def _read_settings(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    return check_settings(raw, path)


def load_settings() -> dict[str, Any]:
    """The settings file's content checked, or the defaults when there is no file (and no override)."""
    path = settings_path()
    if not path.exists():
        if os.environ.get(SETTINGS_ENV):
            raise ValueError(f"{SETTINGS_ENV}={path}: no such file")
        return dict(DEFAULT_SETTINGS)
    return _read_settings(str(path), path.stat().st_mtime)


def _settings(settings: Optional[dict[str, Any]]) -> dict[str, Any]:
    return load_settings() if settings is None else check_settings(settings, "settings")


# ---------------------------------------------------------------------------------------------
# Advantage estimators (run once per batch, in the trainer's driver)


def _groups_by_index(index: Any, rows: int) -> list[list[int]]:
    """Row numbers of each group, by first appearance of its uid."""
    if index is None:
        raise ValueError("giftwrap_verl: the advantage estimator needs verl's `index` (uid) array")
    if len(index) != rows:
        raise ValueError(f"giftwrap_verl: `index` has {len(index)} entries for {rows} rows")
    groups: "OrderedDict[Any, list[int]]" = OrderedDict()
    for i in range(rows):
        key = index[i]
        key = key.item() if hasattr(key, "item") else key
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def compute_gift_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    epsilon: Optional[float] = None,
    config: Any = None,
    settings: Optional[dict[str, Any]] = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GIFT's explicit side Â_i = (r_i − mean_g r)/(std_g r + ε), broadcast over the response.

    r_i = Σ_t token_level_rewards[i, t]; groups by `index`; sample std; a group of one gives
    Â_i = r_i, equal rewards give Â_i = 0 exactly. ε: `epsilon`, else the settings' stdEpsilon.
    Returns (advantages, returns), both [B, T] = Â_i · response_mask[i, t].
    """
    eps = _settings(settings)["stdEpsilon"] if epsilon is None else float(epsilon)
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # [B]
        advantage = torch.zeros_like(scores)  # [B]
        for rows in _groups_by_index(index, scores.shape[0]):
            at = torch.tensor(rows, dtype=torch.long, device=scores.device)
            r = scores[at]  # [g]
            if len(rows) == 1:
                advantage[at] = r
            elif bool((r == r[0]).all()):
                advantage[at] = 0.0
            else:
                advantage[at] = (r - r.mean()) / (r.std(unbiased=True) + eps)
        advantages = advantage.unsqueeze(-1) * response_mask  # [B, T]
    return advantages, advantages


def compute_raw_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw reward r_i = Σ_t token_level_rewards[i, t] as the "advantage", broadcast over the
    response: what the UNA and online DPO losses read. Returns (A, A), A [B, T]."""
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1)  # [B]
        advantages = scores.unsqueeze(-1) * response_mask  # [B, T]
    return advantages, advantages


# ---------------------------------------------------------------------------------------------
# Shared pieces of the losses (run per micro-batch, in each actor worker)


def _config_get(config: Any, key: str) -> Any:
    if config is None:
        return None
    if isinstance(config, dict):
        return config.get(key)
    getter = getattr(config, "get", None)
    if callable(getter):
        try:
            return getter(key, None)
        except Exception:  # noqa: BLE001 - a dataclass whose get() differs
            pass
    return getattr(config, key, None)


def _group_size(config: Any, settings: dict[str, Any], rows: int, what: str) -> int:
    size = settings["groupSize"]
    if size is None:
        size = _config_get(config, "rollout_n")
    if size is None:
        raise ValueError(
            f"giftwrap_verl: {what} needs the group size: set 'groupSize' in {SETTINGS_FILE} "
            "or actor_rollout_ref.rollout.n"
        )
    size = int(size)
    if size < 1 or rows % size != 0:
        raise ValueError(
            f"giftwrap_verl: {what} got a micro-batch of {rows} rows, not a multiple of the group "
            f"size {size}: set actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu to a multiple "
            "of it, with actor_rollout_ref.actor.use_dynamic_bsz=false, "
            "actor_rollout_ref.actor.shuffle=false and trainer.balance_batch=false"
        )
    return size


def _reference_log_prob(old_log_prob: torch.Tensor, log_prob: torch.Tensor, settings: dict[str, Any], what: str) -> torch.Tensor:
    if settings["reference"] == "rollout":
        return old_log_prob.detach()
    ref = _REFERENCE.get()
    if ref is None:
        raise RuntimeError(
            f"giftwrap_verl: {what} with reference 'initial' needs ref_log_prob: set "
            "actor_rollout_ref.actor.use_kl_loss=true and kl_loss_coef=0, and import giftwrap_verl "
            "through actor_rollout_ref.model.external_lib (its ppo_loss wrapper passes it on)"
        )
    if ref.shape != log_prob.shape:
        raise ValueError(
            f"giftwrap_verl: ref_log_prob has shape {tuple(ref.shape)}, log_prob {tuple(log_prob.shape)}"
        )
    return ref.detach().to(log_prob.dtype)


def _implicit_reward(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """u_i = Σ_t mask·(log π − log π_ref), [B]: a sum over response tokens, not a mean."""
    return ((log_prob - ref_log_prob) * mask).sum(dim=-1)


def _first_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values[i, t_i] at each row's first response token t_i, [B] (0 for an empty row)."""
    first = mask.to(torch.float32).argmax(dim=-1, keepdim=True)  # [B, 1]
    has = (mask.sum(dim=-1) > 0).to(values.dtype)  # [B]
    return values.gather(-1, first).squeeze(-1) * has  # [B]


def _row_mean(losses: torch.Tensor, config: Any, divisor: Optional[float] = None) -> torch.Tensor:
    """Σ_rows ℓ / global_batch_size · dp_size when verl gives global_batch_info, else the mean (or
    the sum over `divisor`)."""
    info = _config_get(config, "global_batch_info") or {}
    rows = info.get("global_batch_size") if isinstance(info, dict) else None
    if rows is not None:
        dp = info.get("dp_size") or 1
        return losses.sum() / float(rows) * float(dp)
    if divisor is not None:
        return losses.sum() / divisor
    return losses.mean()


# ---------------------------------------------------------------------------------------------
# Policy losses


def compute_policy_loss_gift(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: Optional[torch.Tensor] = None,
    settings: Optional[dict[str, Any]] = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """GIFT: L = mean_i (Â_i − β_c·ũ_i)², ũ the group-standardised implicit reward (statistics of
    u.detach(), so the gradient flows through u alone). Returns (loss, metrics)."""
    s = _settings(settings)
    mask = response_mask.to(log_prob.dtype)  # [B, T]
    rows = log_prob.shape[0]
    size = _group_size(config, s, rows, "the gift loss")
    ref = _reference_log_prob(old_log_prob, log_prob, s, "the gift loss")
    # 1) explicit side, a constant read from the advantages
    advantage = _first_token(advantages.detach().to(log_prob.dtype), response_mask)  # [B]
    # 2) implicit reward
    u = _implicit_reward(log_prob, ref, mask)  # [B]
    # 3) implicit side, statistics from u.detach()
    if size == 1:
        u_tilde = u * 0.0  # [B] keeps u on the graph with a zero gradient
        std = torch.zeros(rows // size, dtype=u.dtype, device=u.device)
    else:
        v = u.view(-1, size)  # [P, G]
        d = v.detach()
        std = d.std(dim=1, unbiased=True)  # [P]
        u_tilde = ((v - d.mean(dim=1, keepdim=True)) / (std.unsqueeze(1) + s["stdEpsilon"])).reshape(-1)
    # 4) L = mean_i (Â_i − β_c ũ_i)²
    losses = (advantage - s["betaC"] * u_tilde) ** 2  # [B]
    loss = _row_mean(losses, config)
    metrics = {
        "actor/gift_implicit_reward": u.detach().mean().item(),
        "actor/gift_implicit_std": std.mean().item(),
        "actor/gift_advantage_abs": advantage.abs().mean().item(),
    }
    return loss, metrics


def compute_policy_loss_una(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: Optional[torch.Tensor] = None,
    settings: Optional[dict[str, Any]] = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """UNA: L = mean_i (σ(β·u_i) − σ(r_i))², r_i the raw reward ("giftwrap_raw" estimator)."""
    s = _settings(settings)
    mask = response_mask.to(log_prob.dtype)  # [B, T]
    ref = _reference_log_prob(old_log_prob, log_prob, s, "the giftwrap_una loss")
    reward = _first_token(advantages.detach().to(log_prob.dtype), response_mask)  # [B]
    u = _implicit_reward(log_prob, ref, mask)  # [B]
    losses = (torch.sigmoid(s["unaBeta"] * u) - torch.sigmoid(reward)) ** 2  # [B]
    loss = _row_mean(losses, config)
    return loss, {"actor/una_implicit_reward": u.detach().mean().item()}


def compute_policy_loss_online_dpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: Optional[torch.Tensor] = None,
    settings: Optional[dict[str, Any]] = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Online DPO: −log σ(β·(u_c − u_r)) per group (best c against worst r by raw reward, first
    among equals, no pair on a tie), averaged over the pairs; 0 with a zero gradient without any."""
    s = _settings(settings)
    mask = response_mask.to(log_prob.dtype)  # [B, T]
    rows = log_prob.shape[0]
    size = _group_size(config, s, rows, "the giftwrap_online_dpo loss")
    ref = _reference_log_prob(old_log_prob, log_prob, s, "the giftwrap_online_dpo loss")
    reward = _first_token(advantages.detach().to(log_prob.dtype), response_mask).view(-1, size)  # [P, G]
    u = _implicit_reward(log_prob, ref, mask).view(-1, size)  # [P, G]
    # 1) pairs: one-hot rows of the best and the worst, and whether the group has a pair
    chosen = torch.nn.functional.one_hot(reward.argmax(dim=1), size).to(u.dtype)  # [P, G]
    rejected = torch.nn.functional.one_hot(reward.argmin(dim=1), size).to(u.dtype)  # [P, G]
    has_pair = (reward.max(dim=1).values > reward.min(dim=1).values).to(u.dtype)  # [P]
    # 2) −log σ(margin) = softplus(−margin)
    margin = s["dpoBeta"] * ((chosen - rejected) * u).sum(dim=1)  # [P]
    per_pair = torch.nn.functional.softplus(-margin) * has_pair  # [P]
    pairs = has_pair.sum()
    info = _config_get(config, "global_batch_info") or {}
    if isinstance(info, dict) and info.get("global_batch_size") is not None:
        # the mini-batch's pairs are not known here: its groups stand in for them
        loss = per_pair.sum() / (float(info["global_batch_size"]) / size) * float(info.get("dp_size") or 1)
    else:
        loss = per_pair.sum() / torch.clamp(pairs, min=1.0)
    metrics = {
        "actor/dpo_pairs": pairs.item(),
        "actor/dpo_margin": ((margin.detach() * has_pair).sum() / torch.clamp(pairs, min=1.0)).item(),
    }
    return loss, metrics


ADVANTAGE_ESTIMATORS: dict[str, Callable[..., Any]] = {
    "gift": compute_gift_advantage,
    "giftwrap_raw": compute_raw_advantage,
}

POLICY_LOSSES: dict[str, Callable[..., Any]] = {
    "gift": compute_policy_loss_gift,
    "giftwrap_una": compute_policy_loss_una,
    "giftwrap_online_dpo": compute_policy_loss_online_dpo,
}

for _fn in (*ADVANTAGE_ESTIMATORS.values(), *POLICY_LOSSES.values()):
    _fn._giftwrap = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# The ppo_loss wrapper that passes ref_log_prob on


def _padded(data: Any, key: str) -> torch.Tensor:
    """data[key] as a padded [B, T] tensor, as verl's ppo_loss converts it."""
    select = getattr(data, "select", None)
    if callable(select):
        picked = select(key)
        to_padded = getattr(picked, "to_padded_tensor", None)
        if callable(to_padded):
            return to_padded()[key]
        return picked[key]
    return data[key]


def with_reference(ppo_loss: Callable[..., Any]) -> Callable[..., Any]:
    """`ppo_loss` wrapped: while it runs, data's ref_log_prob (when present) is what the losses
    above read as log π_ref under reference 'initial'. The call and its result are unchanged."""
    if getattr(ppo_loss, "_giftwrap_reference", False):
        return ppo_loss
    signature = inspect.signature(ppo_loss)

    @functools.wraps(ppo_loss)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        data = signature.bind_partial(*args, **kwargs).arguments.get("data")
        ref = None
        if data is not None and "ref_log_prob" in data:
            ref = _padded(data, "ref_log_prob")
        token = _REFERENCE.set(ref)
        try:
            return ppo_loss(*args, **kwargs)
        finally:
            _REFERENCE.reset(token)

    wrapper._giftwrap_reference = True  # type: ignore[attr-defined]
    return wrapper


def _install_reference_hook() -> bool:
    try:
        from verl.workers.utils import losses
    except ImportError:
        return False
    original = losses.ppo_loss
    wrapped = with_reference(original)
    losses.ppo_loss = wrapped
    workers = sys.modules.get("verl.workers.engine_workers")
    if workers is not None and getattr(workers, "ppo_loss", None) is original:
        workers.ppo_loss = wrapped
    return True


# ---------------------------------------------------------------------------------------------
# Registration


def _register_into(registry: dict[str, Any], decorator: Callable[[str], Any], table: dict[str, Any], kind: str) -> None:
    for name, fn in table.items():
        existing = registry.get(name)
        if existing is fn:
            continue
        if existing is not None and getattr(existing, "_giftwrap", False):
            registry[name] = fn  # this module imported again (another name, a reload)
            continue
        if existing is not None:
            raise ValueError(
                f"giftwrap_verl: verl already has a {kind} named '{name}' ({existing!r}); "
                "giftwrap's would replace it"
            )
        decorator(name)(fn)


def register() -> bool:
    """Registers the estimators and losses with verl's registries and wraps ppo_loss; False (and
    nothing done) when verl is not importable. Idempotent."""
    try:
        from verl.trainer.ppo import core_algos
    except ImportError:
        return False
    _register_into(
        core_algos.ADV_ESTIMATOR_REGISTRY, core_algos.register_adv_est, ADVANTAGE_ESTIMATORS, "advantage estimator"
    )
    _register_into(
        core_algos.POLICY_LOSS_REGISTRY, core_algos.register_policy_loss, POLICY_LOSSES, "policy loss"
    )
    _install_reference_hook()
    return True


REGISTERED = register()
