"""Token lengths of every turn, computed the way LLaMA-Factory's processors build ``input_ids``.

Supervised (sft): ``encode_multiturn`` gives one (source, target) pair per turn; the first source carries the
prefix and the system prompt, a target ends with the template's EOS markup. With ``efficient_eos`` one EOS is
appended after the last turn instead, and it is reserved before truncation.
Pairwise (rm/dpo): ``encode_oneturn`` gives one pair; the target is the longer of chosen and rejected.
Pretrain (pt): the text plus an EOS token.

Speed: every string slot of every message is one string for the fast tokenizer's batch API; identical strings
(the system prompt of every sample, say) are tokenized once. Strings are encoded in chunks so that the
``Encoding`` objects of 100,000 samples never sit in memory together, and only lengths are kept. On large inputs
the regex pre-tokenizer dominates; :func:`count_tokens` then counts by space-separated pieces, tokenizing each
distinct piece once, after checking on a sample that this is exact for the tokenizer.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuner.data.convert import ASSISTANT, FUNCTION, OBSERVATION, USER, Sample
from tuner.data.templates import ChatTemplate, Slots, Special
from tuner.data.tools import TOOL_FORMATS, ToolFormatError, function_text, tools_text

TOOL_CALL_WORDS = ("<tool_call>", "</tool_call>")

#: Strings per call to the tokenizer's batch API: large enough to keep both cores busy, small enough that the
#: Encoding objects of a chunk stay a few MiB.
CHUNK = 4096


@dataclass
class EncodeOptions:
    kind: str = "supervised"  # supervised | pairwise | pretrain
    enable_thinking: bool | None = True
    preserve_thinking: bool = False
    mask_history: bool = False
    default_system: str | None = None  # the config's `default_system` overrides the template's
    has_bos: bool = False  # the tokenizer has a bos token: a BOS slot costs one token
    eos_text: str | None = None  # for pretrain: what LLaMA-Factory appends to each text


@dataclass
class TurnLengths:
    """Per-turn source/target token counts of many samples: sample ``i`` owns turns ``offsets[i]:offsets[i+1]``."""

    src: np.ndarray  # int32
    tgt: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = samples + 1
    reserve: int = 0  # tokens taken before any turn (the efficient_eos EOS)

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def empty(cls, reserve: int = 0) -> TurnLengths:
        z = np.zeros(0, dtype=np.int32)
        return cls(z, z.copy(), np.zeros(1, dtype=np.int64), reserve)

    @classmethod
    def concat(cls, parts: list[TurnLengths]) -> TurnLengths:
        parts = [p for p in parts if p.count]
        if not parts:
            return cls.empty()
        offs = [np.zeros(1, dtype=np.int64)]
        base = 0
        for p in parts:
            offs.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return cls(
            np.concatenate([p.src for p in parts]).astype(np.int32),
            np.concatenate([p.tgt for p in parts]).astype(np.int32),
            np.concatenate(offs),
            max(p.reserve for p in parts),
        )


class _Plan:
    """Strings to tokenize (deduplicated) and, per message, which strings and how many fixed tokens it has."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.index: dict[str, int] = {"": 0}
        self.strings.append("")
        self.pieces: list[int] = []  # string ids, message after message
        self.starts: list[int] = []  # where each message's ids start in `pieces`
        self.consts: list[int] = []  # fixed tokens of each message (specials, thought words)

    def message(self, texts: list[str], const: int) -> int:
        self.starts.append(len(self.pieces))
        index = self.index
        added = False
        for t in texts:
            if not t:
                continue
            k = index.get(t)
            if k is None:
                k = index[t] = len(self.strings)
                self.strings.append(t)
            self.pieces.append(k)
            added = True
        if not added:
            self.pieces.append(0)  # "" costs nothing; keeps every message non-empty for reduceat
        self.consts.append(const)
        return len(self.consts) - 1

    def lengths(self, tokenizer: Any) -> np.ndarray:
        """Token count of every message."""
        lens = np.zeros(len(self.strings), dtype=np.int64)
        lens[1:] = count_tokens(self.strings[1:], tokenizer)
        if not self.consts:
            return np.zeros(0, dtype=np.int64)
        per_piece = lens[np.asarray(self.pieces, dtype=np.int64)]
        return np.add.reduceat(per_piece, np.asarray(self.starts, dtype=np.int64)) + np.asarray(self.consts)


# -- counting tokens -------------------------------------------------------------------------------------------
#: A split point: a single space between two non-whitespace characters, kept at the start of the right piece.
#: Byte-level BPE tokenizers (GPT-2, Llama 3, Qwen2 and their pre-tokenizer regexes) never merge across such a
#: point: the text before it ends a pre-token and " word" starts one, so the tokens of a string are the tokens
#: of its pieces. Pieces repeat (words), so each distinct piece is tokenized once.
_SPLIT = re.compile(r"(?<=\S)(?= \S)")
#: Below this many characters the exact batch encode is as fast as anything.
_MEMO_MIN_CHARS = 2_000_000
#: Strings checked exactly against the piecewise count before it is trusted for a tokenizer.
_PROBE = 64


def _encode_lengths(tokenizer: Any, strings: list[str]) -> np.ndarray:
    encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch
    out = np.zeros(len(strings), dtype=np.int64)
    for start in range(0, len(strings), CHUNK):
        batch = strings[start : start + CHUNK]
        out[start : start + len(batch)] = [len(e) for e in encode(batch, add_special_tokens=False)]
    return out


def _piecewise_ok(tokenizer: Any, strings: list[str]) -> bool:
    """Whether counting by pieces gives exactly the tokenizer's counts: never for added tokens that strip
    spaces, and only when a sample of real strings agrees (a sentencepiece ``Prepend`` normalizer does not)."""
    try:
        added = tokenizer.get_added_tokens_decoder().values()
        if any(getattr(t, "lstrip", False) or getattr(t, "rstrip", False) or " " in t.content for t in added):
            return False
    except AttributeError:
        return False
    step = max(1, len(strings) // _PROBE)
    probe = [s for s in strings[::step] if " " in s][:_PROBE]
    if not probe:
        return False
    exact = _encode_lengths(tokenizer, probe)
    split = [_SPLIT.split(s) for s in probe]
    flat = list({p for ps in split for p in ps})
    memo = dict(zip(flat, _encode_lengths(tokenizer, flat).tolist(), strict=True))
    return all(sum(memo[p] for p in ps) == e for ps, e in zip(split, exact.tolist(), strict=True))


def count_tokens(strings: list[str], tokenizer: Any) -> np.ndarray:
    """``len(tokenizer.encode(s, add_special_tokens=False))`` for every string, through the batch API.

    Large inputs are counted piecewise with a memo of distinct pieces when a probe shows it is exact for this
    tokenizer (see ``_SPLIT``); otherwise, and for small inputs, every string is encoded whole.
    """
    if sum(map(len, strings)) < _MEMO_MIN_CHARS or not _piecewise_ok(tokenizer, strings):
        return _encode_lengths(tokenizer, strings)
    out = np.zeros(len(strings), dtype=np.int64)
    memo: dict[str, int] = {}
    split = _SPLIT.split
    get = memo.get
    step = CHUNK * 4
    for start in range(0, len(strings), step):
        batch = strings[start : start + step]
        pieces = [split(x) for x in batch]
        flat = list(itertools.chain.from_iterable(pieces))
        vals = np.fromiter(map(get, flat, itertools.repeat(-1)), dtype=np.int64, count=len(flat))
        miss = np.flatnonzero(vals < 0)
        if miss.size:
            new = list({flat[i] for i in miss.tolist()})
            memo.update(zip(new, _encode_lengths(tokenizer, new).tolist(), strict=True))
            vals[miss] = [memo[flat[i]] for i in miss.tolist()]
        counts = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        offsets = np.zeros(len(pieces), dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        out[start : start + len(batch)] = np.add.reduceat(vals, offsets)
    return out


def _apply(slots: Slots, content: str, idx: str, has_bos: bool) -> tuple[list[str], int]:
    texts: list[str] = []
    const = 0
    for s in slots:
        if isinstance(s, Special):
            const += 0 if (s.kind == "bos" and not has_bos) else 1
        else:
            texts.append(s.replace("{{content}}", content, 1).replace("{{idx}}", idx, 1))
    return texts, const


def _first_text(slots: Slots, content: str) -> str:
    """``format_system.apply(...)[0]`` of a llama2-kind template (the fused system text)."""
    first = slots[0]
    return first.replace("{{content}}", content, 1) if isinstance(first, str) else ""


def _tool_text(tools: str, fmt: str) -> str:
    """``format_tools``: the tool descriptions rendered as the template's tool prompt."""
    try:
        return tools_text(tools, fmt)
    except ToolFormatError:  # reported by the converter; count the raw text
        return tools


def _function_content(content: str, tmpl: ChatTemplate, fmt: str) -> str:
    try:
        return function_text(content, fmt, tmpl.thought_words, TOOL_CALL_WORDS)
    except ToolFormatError:  # reported by the converter; count the raw text
        return content


def _render(
    plan: _Plan, tmpl: ChatTemplate, opts: EncodeOptions, system: str, tools: str, messages: list[tuple[str, str]],
    extra: dict[int, int] | None = None,
) -> list[int]:
    """``Template._encode``: one message recipe per message; returns their indexes in the plan."""
    out = []
    has_bos = opts.has_bos
    llama2 = tmpl.kind == "llama2"
    fmt = TOOL_FORMATS.get(tmpl.name, "default")
    for i, (role, content) in enumerate(messages):
        texts: list[str] = []
        const = extra.get(i, 0) if extra else 0
        system_text = ""
        if i == 0:
            t, c = _apply(tmpl.prefix, "", "0", has_bos)
            texts += t
            const += c
            if system or tools:
                full = system + (_tool_text(tools, fmt) if tools else "")
                if llama2:
                    system_text = _first_text(tmpl.system, full)
                else:
                    t, c = _apply(tmpl.system, full, "0", has_bos)
                    texts += t
                    const += c
        if role == USER:
            t, c = _apply(tmpl.user, system_text + content if llama2 else content, str(i // 2), has_bos)
        elif role == ASSISTANT:
            t, c = _apply(tmpl.assistant, content, "0", has_bos)
        elif role == OBSERVATION:
            t, c = _apply(tmpl.observation, content, "0", has_bos)
        elif role == FUNCTION:
            t, c = _apply(tmpl.function, _function_content(content, tmpl, fmt), "0", has_bos)
        else:  # converted samples never carry other roles
            t, c = [content], 0
        texts += t
        const += c
        out.append(plan.message(texts, const))
    return out


def encode_samples(samples: list[Sample], tmpl: ChatTemplate, tokenizer: Any, opts: EncodeOptions) -> TurnLengths:
    if opts.kind == "pairwise":
        return _encode_pairwise(samples, tmpl, tokenizer, opts)
    if opts.kind == "pretrain":
        return _encode_pretrain(samples, tokenizer, opts)
    return _encode_supervised(samples, tmpl, tokenizer, opts)


def _thought_count(tmpl: ChatTemplate, tokenizer: Any) -> int:
    text = tmpl.thought_words[0] + tmpl.thought_words[1]
    return len(tokenizer.encode(text, add_special_tokens=False))


def _encode_supervised(samples: list[Sample], tmpl: ChatTemplate, tokenizer: Any, opts: EncodeOptions) -> TurnLengths:
    plan = _Plan()
    turns_per_sample = np.zeros(len(samples), dtype=np.int64)
    default_system = tmpl.default_system if opts.default_system is None else opts.default_system
    reasoning = tmpl.reasoning
    thought = _thought_count(tmpl, tokenizer) if reasoning else 0
    discard_history_cot = opts.mask_history and not opts.preserve_thinking
    for n, (system, tools, messages, _) in enumerate(samples):
        extra: dict[int, int] | None = None
        if reasoning:
            messages, extra = _reasoning_multiturn(tmpl, messages, opts, thought, discard_history_cot)
        _render(plan, tmpl, opts, system or default_system, tools or "", messages, extra)
        turns_per_sample[n] = len(messages) // 2
    msg = plan.lengths(tokenizer)
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum(turns_per_sample, out=offsets[1:])
    return TurnLengths(
        src=msg[0::2].astype(np.int32), tgt=msg[1::2].astype(np.int32), offsets=offsets,
        reserve=1 if tmpl.efficient_eos else 0,
    )  # fmt: skip


def _reasoning_multiturn(
    tmpl: ChatTemplate, messages: list[tuple[str, str]], opts: EncodeOptions, thought: int, discard: bool
) -> tuple[list[tuple[str, str]], dict[int, int]]:
    """``ReasoningTemplate.encode_multiturn``: strip thoughts, then add an empty thought where there is none."""
    msgs = list(messages)
    if opts.enable_thinking is False:
        for i in range(1, len(msgs), 2):
            msgs[i] = (msgs[i][0], tmpl.remove_thought(msgs[i][1]))
    if discard:
        for i in range(1, len(msgs) - 2, 2):
            msgs[i] = (msgs[i][0], tmpl.remove_thought(msgs[i][1]))
    extra: dict[int, int] = {}
    indices = [len(msgs) - 2] if discard else range(0, len(msgs), 2)
    for i in indices:
        if not tmpl.has_thought(msgs[i + 1][1]):
            j = i + 1 if opts.enable_thinking else i  # trained with the response, else part of the prompt
            extra[j] = extra.get(j, 0) + thought
    return msgs, extra


def _encode_pairwise(samples: list[Sample], tmpl: ChatTemplate, tokenizer: Any, opts: EncodeOptions) -> TurnLengths:
    plan = _Plan()
    default_system = tmpl.default_system if opts.default_system is None else opts.default_system
    thought = _thought_count(tmpl, tokenizer) if tmpl.reasoning else 0
    layout: list[tuple[list[int], int, int]] = []  # prompt message ids, chosen id, rejected id
    for system, tools, prompt, responses in samples:
        assert responses is not None
        ids: list[list[int]] = []
        for resp in responses[:2]:
            msgs = list(prompt) + [resp]
            extra: dict[int, int] = {}
            if tmpl.reasoning:  # ReasoningTemplate.encode_oneturn
                if not opts.preserve_thinking:
                    for i in range(1, len(msgs) - 2, 2):
                        msgs[i] = (msgs[i][0], tmpl.remove_thought(msgs[i][1]))
                if opts.enable_thinking is False:
                    msgs[-1] = (msgs[-1][0], tmpl.remove_thought(msgs[-1][1]))
                if not tmpl.has_thought(msgs[-1][1]):
                    j = len(msgs) - 1 if opts.enable_thinking else len(msgs) - 2
                    extra[j] = thought
            ids.append(_render(plan, tmpl, opts, system or default_system, tools or "", msgs, extra))
        layout.append((ids[0][:-1], ids[0][-1], ids[1][-1]))
    msg = plan.lengths(tokenizer)
    eos = 1 if tmpl.efficient_eos else 0
    src = np.array([int(msg[p].sum()) for p, _, _ in layout], dtype=np.int32)
    tgt = np.array([max(int(msg[c]), int(msg[r])) + eos for _, c, r in layout], dtype=np.int32)
    return TurnLengths(src=src, tgt=tgt, offsets=np.arange(len(layout) + 1, dtype=np.int64), reserve=0)


def _encode_pretrain(samples: list[Sample], tokenizer: Any, opts: EncodeOptions) -> TurnLengths:
    plan = _Plan()
    for _, _, messages, _ in samples:
        plan.message([messages[0][1]], 1)  # + the EOS LLaMA-Factory appends
    msg = plan.lengths(tokenizer)
    n = len(samples)
    return TurnLengths(
        src=msg.astype(np.int32), tgt=np.zeros(n, dtype=np.int32), offsets=np.arange(n + 1, dtype=np.int64), reserve=0
    )
