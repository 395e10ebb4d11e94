"""giftwrap's rewards for verl: a custom reward function that asks a giftwrap reward server.

Start the server next to the trainer with ``deno task serve-rewards <recipe>``; it scores
samples with the recipe's own reward sources, exactly as a giftwrap run does (the weighted sum
r = sum_k w_k * score_k of its rewards, each source's onError applied). Point verl at this file:

    custom_reward_function.path=reward.py custom_reward_function.name=compute_score

``compute_score`` serves both of verl's reward managers:

  - ``naive`` calls ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)``
    once per sample and gets a float (a dict with the success reward, below);
  - ``batch`` (``reward_model.reward_manager=batch``) calls ``compute_score(data_sources=,
    solution_strs=, ground_truths=, extra_infos=)`` with lists (or arrays) and gets a list, one
    result per sample. ``compute_score_batch`` is the same with positional lists.

Positional calls are told apart by ``solution_str``: a string is one sample, a sequence a batch.

Each sample is posted as ``{"prompt": extra_info["prompt"], "completion": solution_str,
"answer": extra_info["answer"] (or ground_truth), "row": extra_info["row"]}``; ``row`` goes as
the JSON string the dataset holds (a dict is encoded). ``tokens`` and ``truncated`` are not sent,
as verl does not pass them: the server counts the completion's tokens with the recipe's tokenizer
and takes it as not truncated.

Settings, from the environment at each call:

  GIFTWRAP_REWARD_URL      the server (default http://127.0.0.1:8787; /score is added when the
                           URL has no path)
  GIFTWRAP_REWARD_BATCH    samples per request (default 64)
  GIFTWRAP_REWARD_RETRIES  retries of a request after a connection error, a timeout, 429 or a 5xx
                           (503: the server is busy), waiting 0.5 s * 2^k (at most 30 s, at least
                           the server's Retry-After) (default 8)
  GIFTWRAP_REWARD_TIMEOUT  seconds to wait for one answer (default 600)

When the recipe has a success reward (the server names it), each sample's result is a dict,
``{"score": total, "acc": success score}``: verl's reward managers take ``score`` as the reward
and keep ``acc`` per sample, which DAPO's dynamic sampling (``algorithm.filter_groups.metric=acc``)
and the validation metrics read. Without one, a float.

A sample whose score is null (a "skip-group" reward could not score it; the server sees no
groups) scores 0.0, with one warning line on stderr per request. A 4xx answer (a "fail" reward
could not score a sample: 422; a malformed sample: 400) raises RuntimeError with the server's
one line, as does a request that still fails after its retries.

Standard library only: it imports and runs without verl.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8787"


def _setting(name, default, kind, minimum):
    """An integer (or a float, kind=float) setting from the environment, at least ``minimum``."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value < minimum or value != value:
        want = "an integer" if kind is int else "a number"
        raise RuntimeError(f"{name}: expected {want} >= {minimum}, got {text!r}")
    return value


def _url():
    url = os.environ.get("GIFTWRAP_REWARD_URL") or DEFAULT_URL
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RuntimeError(f"GIFTWRAP_REWARD_URL: expected an http:// or https:// URL, got {url!r}")
    return url + "/score" if parts.path in ("", "/") else url


def _text(value):
    """A string as it is; anything else (a number, a list of messages) as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return json.dumps(_plain(value), ensure_ascii=False)


def _plain(value):
    """numpy scalars and arrays (verl's non-tensor batch) as Python values, for json."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _sample(solution_str, ground_truth, extra_info):
    extra = extra_info if isinstance(extra_info, dict) else {}
    answer = extra.get("answer")
    row = extra.get("row", "{}")
    return {
        "prompt": _text(extra.get("prompt", "")),
        "completion": _text(solution_str),
        "answer": _text(ground_truth if answer is None else answer),
        "row": row if isinstance(row, str) else json.dumps(_plain(row), ensure_ascii=False),
    }


def _one_line(text, limit=300):
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + "..."


def _error_line(body):
    try:
        return _one_line(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return _one_line(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)


def _post(url, samples):
    """The server's answer to one request, retrying what is worth retrying."""
    retries = _setting("GIFTWRAP_REWARD_RETRIES", 8, int, 0)
    timeout = _setting("GIFTWRAP_REWARD_TIMEOUT", 600.0, float, 0.001)
    data = json.dumps({"samples": samples}, ensure_ascii=False).encode("utf-8")
    problem = ""
    for attempt in range(retries + 1):
        wait = min(30.0, 0.5 * 2**attempt)
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            line = _error_line(error.read())
            if error.code != 429 and error.code < 500:
                raise RuntimeError(f"giftwrap reward server {url}: status {error.code}: {line}")
            problem = f"status {error.code}: {line}"
            try:
                wait = max(wait, float(error.headers.get("retry-after") or 0))
            except ValueError:
                pass
        except (urllib.error.URLError, OSError) as error:
            # connection refused or reset, a timeout
            problem = _one_line(getattr(error, "reason", None) or error)
        if attempt < retries:
            time.sleep(wait)
    tries = retries + 1
    raise RuntimeError(
        f"giftwrap reward server {url}: no answer after {tries} attempt{'s' * (tries != 1)}: "
        f"{problem}"
    )


def _scores(samples):
    url = _url()
    size = _setting("GIFTWRAP_REWARD_BATCH", 64, int, 1)
    out = []
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        answer = _post(url, chunk)
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list) or len(scores) != len(chunk):
            raise RuntimeError(
                f"giftwrap reward server {url}: expected {len(chunk)} scores, got "
                f"{_one_line(json.dumps(answer))[:120]}"
            )
        skipped = [i for i, score in enumerate(scores) if score is None]
        if skipped:
            errors = answer.get("errors") or {}
            why = "; ".join(f"{name}: {e.get('first')}" for name, e in errors.items())
            print(
                f"giftwrap reward: warning: {len(skipped)} of {len(chunk)} samples could not be "
                f"scored by a skip-group reward and score 0.0 ({_one_line(why, 200)})",
                file=sys.stderr,
            )
        totals = [0.0 if score is None else float(score) for score in scores]
        success = answer.get("success")
        accuracy = (answer.get("components") or {}).get(success) if success else None
        if isinstance(accuracy, list) and len(accuracy) == len(chunk):
            # verl keeps a dict's other entries per sample (reward_extra_info): "acc" is what
            # DAPO's dynamic sampling (algorithm.filter_groups.metric=acc) and validation read.
            out.extend({"score": t, "acc": float(a)} for t, a in zip(totals, accuracy))
        else:
            out.extend(totals)
    return out


def compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos=None, **kwargs):
    """verl's batch reward hook: lists (or arrays) in, one float per sample out."""
    n = len(solution_strs)
    truths = list(ground_truths) if ground_truths is not None else [None] * n
    extras = list(extra_infos) if extra_infos is not None else [None] * n
    if len(truths) != n or len(extras) != n:
        raise RuntimeError(
            f"compute_score_batch: {n} solution_strs, {len(truths)} ground_truths and "
            f"{len(extras)} extra_infos: expected as many of each"
        )
    return _scores([_sample(s, t, e) for s, t, e in zip(solution_strs, truths, extras)])


def compute_score(
    data_source=None,
    solution_str=None,
    ground_truth=None,
    extra_info=None,
    data_sources=None,
    solution_strs=None,
    ground_truths=None,
    extra_infos=None,
    **kwargs,
):
    """verl's reward hook: one sample (naive manager) gives a float, lists (batch manager) a list."""
    if solution_strs is not None:
        return compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos)
    if not isinstance(solution_str, (str, bytes)) and hasattr(solution_str, "__len__"):
        return compute_score_batch(data_source, solution_str, ground_truth, extra_info)
    return _scores([_sample(solution_str, ground_truth, extra_info)])[0]
