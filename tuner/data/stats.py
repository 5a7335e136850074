"""Token-length statistics and what ``cutoff_len`` does to them.

Lengths are what LLaMA-Factory feeds the model *before* truncation: ``prompt`` is everything before the last
response (system, history, the last user turn, template markup), ``response`` is the last response with its
end-of-turn markup, ``total`` is both plus the efficient-EOS token. Percentiles are numpy's default (linear
interpolation), so they can be checked against ``numpy.percentile``.

Truncation reproduces ``SupervisedDatasetProcessor._encode_data_example`` exactly: turns are taken in order
(last turn first with ``mask_history``), each is cut by ``infer_seqlen`` to the room left, and once the room is
gone the remaining turns are dropped. With ``packing`` the same truncation happens first (at ``cutoff_len - 1``
when ``packing`` is set explicitly), so LLaMA-Factory's "Dropped lengthy example" branch never fires: long
samples are truncated, not dropped, in both modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.data.encode import TurnLengths

PERCENTILES = (50, 90, 95, 99)


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's ``processor_utils.infer_seqlen``, verbatim in behaviour."""
    if target_len * 2 < cutoff_len:  # truncate source
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:  # truncate target
        max_target_len = cutoff_len - source_len
    else:  # truncate both
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def _infer_seqlen_np(s: np.ndarray, t: np.ndarray, cutoff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`infer_seqlen` (same integer arithmetic, including ``int()`` truncation toward zero)."""
    s64, t64, c64 = s.astype(np.int64), t.astype(np.int64), cutoff.astype(np.int64)
    denom = np.maximum(s64 + t64, 1)
    both = np.trunc(c64 * (t64.astype(np.float64) / denom)).astype(np.int64)
    max_t = np.where(t64 * 2 < c64, c64, np.where(s64 * 2 < c64, c64 - s64, both))
    new_t = np.minimum(max_t, t64)
    new_s = np.minimum(np.maximum(c64 - new_t, 0), s64)
    return new_s, new_t


@dataclass
class Truncation:
    """What one ``cutoff_len`` does to a set of samples."""

    cutoff_len: int  # the value LLaMA-Factory truncates at (after the packing adjustment)
    samples: int
    truncated: int  # samples that lose at least one token
    response_truncated: int  # ... whose last response loses at least one token
    response_lost: int  # ... whose last response is cut away entirely (no token of it is trained)
    turns_lost: int  # multi-turn samples that lose whole turns
    tokens_before: int
    tokens_after: int
    label_tokens: int  # tokens that carry loss after truncation
    prompt_label_tokens: int  # of which prompt tokens (train_on_prompt)

    def share(self, n: int) -> float:
        return n / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff_len": self.cutoff_len,
            "samples": self.samples,
            "truncated": self.truncated,
            "truncated_share": round(self.share(self.truncated), 6),
            "response_truncated": self.response_truncated,
            "response_lost": self.response_lost,
            "response_lost_share": round(self.share(self.response_lost), 6),
            "turns_lost": self.turns_lost,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "label_tokens": self.label_tokens,
            "prompt_label_tokens": self.prompt_label_tokens,
        }


@dataclass
class SplitStats:
    """Length distribution of one split (the training datasets, or the eval datasets) merged."""

    lengths: TurnLengths
    prompt: np.ndarray = field(init=False)
    response: np.ndarray = field(init=False)
    total: np.ndarray = field(init=False)
    turns: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        tl = self.lengths
        n = tl.count
        if n == 0:
            z = np.zeros(0, dtype=np.int64)
            self.prompt, self.response, self.total, self.turns = z, z, z, z
            return
        starts = tl.offsets[:-1]
        last = tl.offsets[1:] - 1
        src_sum = np.add.reduceat(tl.src.astype(np.int64), starts)
        tgt_sum = np.add.reduceat(tl.tgt.astype(np.int64), starts)
        self.response = tl.tgt[last].astype(np.int64)
        self.prompt = src_sum + tgt_sum - self.response
        self.total = self.prompt + self.response + tl.reserve
        self.turns = np.diff(tl.offsets)

    @property
    def count(self) -> int:
        return self.lengths.count

    @property
    def multi_turn(self) -> int:
        return int((self.turns > 1).sum())

    def percentiles(self, which: str) -> dict[str, float]:
        arr = getattr(self, which)
        if arr.size == 0:
            return {}
        values = np.percentile(arr, PERCENTILES)
        out = {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}
        out["max"] = float(arr.max())
        out["mean"] = float(arr.mean())
        out["min"] = float(arr.min())
        return out

    def p(self, q: float, which: str = "total") -> float:
        arr = getattr(self, which)
        return float(np.percentile(arr, q)) if arr.size else 0.0

    def truncation(self, cutoff_len: int, *, mask_history: bool = False, train_on_prompt: bool = False) -> Truncation:
        tl = self.lengths
        n = tl.count
        if n == 0:
            return Truncation(cutoff_len, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        turns = self.turns
        single = turns == 1
        kept_total = np.zeros(n, dtype=np.int64)
        kept_resp = np.zeros(n, dtype=np.int64)
        lost_turns = np.zeros(n, dtype=bool)
        label = np.zeros(n, dtype=np.int64)
        prompt_label = np.zeros(n, dtype=np.int64)
        reserve = tl.reserve
        # single-turn samples, vectorised
        idx = np.nonzero(single)[0]
        if idx.size:
            t0 = tl.offsets[idx]
            s, t = tl.src[t0].astype(np.int64), tl.tgt[t0].astype(np.int64)
            room = np.full(idx.size, cutoff_len - reserve, dtype=np.int64)
            ok = room > 0
            ns, nt = _infer_seqlen_np(s, t, np.maximum(room, 0))
            ns, nt = np.where(ok, ns, 0), np.where(ok, nt, 0)
            kept_total[idx] = ns + nt + reserve
            kept_resp[idx] = nt
            label[idx] = nt + (ns if train_on_prompt else 0)
            prompt_label[idx] = ns if train_on_prompt else 0
        # multi-turn samples: the loop of _encode_data_example
        for i in np.nonzero(~single)[0]:
            a, b = int(tl.offsets[i]), int(tl.offsets[i + 1])
            pairs = list(zip(tl.src[a:b].tolist(), tl.tgt[a:b].tolist(), strict=True))
            order = list(range(len(pairs)))[::-1] if mask_history else list(range(len(pairs)))
            total = reserve
            resp = 0
            lab = plab = 0
            dropped = False
            for k, turn in enumerate(order):
                if total >= cutoff_len:
                    dropped = True
                    break
                s_len, t_len = pairs[turn]
                ns_i, nt_i = infer_seqlen(s_len, t_len, cutoff_len - total)
                total += ns_i + nt_i
                if turn == len(pairs) - 1:
                    resp = nt_i
                if train_on_prompt:
                    lab += ns_i
                    plab += ns_i
                if not (mask_history and k != 0):
                    lab += nt_i
            kept_total[i] = total
            kept_resp[i] = resp
            lost_turns[i] = dropped
            label[i] = lab
            prompt_label[i] = plab
        truncated = kept_total < self.total
        resp_cut = kept_resp < self.response
        return Truncation(
            cutoff_len=cutoff_len, samples=n, truncated=int(truncated.sum()), response_truncated=int(resp_cut.sum()),
            response_lost=int(((kept_resp == 0) & (self.response > 0)).sum()), turns_lost=int(lost_turns.sum()),
            tokens_before=int(self.total.sum()), tokens_after=int(kept_total.sum()), label_tokens=int(label.sum()),
            prompt_label_tokens=int(prompt_label.sum()),
        )  # fmt: skip

    def histogram(self, bins: int = 20, which: str = "total") -> list[tuple[int, int, int]]:
        """(low, high, count) buckets over [0, max], for the CLI's bar chart."""
        arr = getattr(self, which)
        if arr.size == 0:
            return []
        top = int(arr.max())
        width = max(1, math.ceil((top + 1) / bins))
        counts = np.bincount(arr // width, minlength=bins)
        return [(k * width, (k + 1) * width - 1, int(c)) for k, c in enumerate(counts)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.count,
            "multi_turn": self.multi_turn,
            "prompt": self.percentiles("prompt"),
            "response": self.percentiles("response"),
            "total": self.percentiles("total"),
        }
