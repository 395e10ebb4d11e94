"""Driver for verl_plugin_test.ts: runs giftwrap_verl's functions on a batch read from stdin (JSON)
and prints their values and torch autograd gradients w.r.t. log_prob as JSON.

argv[1]: the plugin's path; argv[2]: "loss" | "advantage" | "stub" (registration on a stub verl,
whose directory is argv[3])."""

import importlib.util
import json
import sys

import torch


def load(path, name="giftwrap_verl"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "stub":
        sys.path.insert(0, sys.argv[3])
        plugin = load(path)
        again = load(path, "giftwrap_verl_again")  # a second import: registration is idempotent
        from verl.trainer.ppo import core_algos
        from verl.workers.utils import losses

        # ppo_loss as verl's engine workers call it: the loss sees data's ref_log_prob
        core_algos.POLICY_LOSS_REGISTRY["probe"] = lambda **kw: (plugin._REFERENCE.get(), {})
        ref = torch.tensor([[1.0, 2.0]])
        seen = losses.ppo_loss(config={"loss_mode": "probe"}, model_output={}, data={"ref_log_prob": ref})
        print(json.dumps({
            "registered": [plugin.REGISTERED, again.REGISTERED],
            "advantage": sorted(k for k in core_algos.ADV_ESTIMATOR_REGISTRY),
            "loss": sorted(k for k in core_algos.POLICY_LOSS_REGISTRY),
            "giftIsOurs": core_algos.POLICY_LOSS_REGISTRY["gift"] is again.compute_policy_loss_gift,
            "wrappedOnce": losses.ppo_loss.__wrapped__ is losses.original_ppo_loss,
            "refSeen": seen.tolist() if seen is not None else None,
            "refAfter": plugin._REFERENCE.get() is None,
        }))
        return
    plugin = load(path)
    batch = json.load(sys.stdin)
    if mode == "advantage":
        rewards = torch.tensor(batch["rewards"], dtype=torch.float32)
        mask = torch.tensor(batch["mask"], dtype=torch.float32)
        token_level = torch.zeros_like(mask)
        token_level[:, 0] = rewards
        adv, _ = plugin.compute_gift_advantage(token_level, mask, index=batch["index"], settings=batch["settings"])
        raw, _ = plugin.compute_raw_advantage(token_level, mask)
        print(json.dumps({"gift": adv.tolist(), "raw": raw.tolist()}))
        return
    logp = torch.tensor(batch["logp"], dtype=torch.float32, requires_grad=True)
    old = torch.tensor(batch["oldLogp"], dtype=torch.float32)
    mask = torch.tensor(batch["mask"], dtype=torch.float32)
    advantages = torch.tensor(batch["advantages"], dtype=torch.float32)
    fn = plugin.POLICY_LOSSES[batch["loss"]]
    token = plugin._REFERENCE.set(torch.tensor(batch["refLogp"], dtype=torch.float32)) if "refLogp" in batch else None
    try:
        loss, _ = fn(old, logp, advantages, mask.bool(), "token-mean", {"rollout_n": batch["groupSize"]},
                     None, settings=batch["settings"])
    except ValueError as e:
        print(json.dumps({"error": str(e)}))
        return
    finally:
        if token is not None:
            plugin._REFERENCE.reset(token)
    loss.backward()
    print(json.dumps({"loss": loss.item(), "grad": logp.grad.tolist()}))


main()
