"""Turn rows into conversations the way LLaMA-Factory's ``data/converter.py`` and the processors do.

Alpaca: ``history`` pairs become earlier user/assistant turns, then one user turn ``"prompt\\nquery"`` (either part
skipped when empty), then the response. ShareGPT: an optional leading system message, then messages whose
roles must alternate (user|observation, assistant|function).

Every way a row can go wrong is classified as LLaMA-Factory would react:

* *fatal*: a missing column (``KeyError``), a non-string where a string is formatted, ``messages`` that is
  not a list. LLaMA-Factory stops, so these are the first thing to fix.
* *dropped*: rows that convert to an invalid example ("Invalid role tag", "Invalid message count", no
  string response). LLaMA-Factory warns and drops them; training silently uses fewer samples.

A sample is ``(system, tools, messages, responses)``: ``messages`` is the prompt and, for supervised stages, the
response as its last message; ``responses`` holds (chosen, rejected) for ranking stages.
"""

from __future__ import annotations

import json
from typing import Any

from tuner.data.info import DatasetAttr
from tuner.data.problems import Problem, RowProblems
from tuner.data.readers import Table
from tuner.data.tools import ToolFormatError, _calls

Message = tuple[str, str]  # (role, content): role is user | assistant | observation | function
Sample = tuple[str | None, str, list[Message], list[Message] | None]

USER, ASSISTANT, OBSERVATION, FUNCTION, SYSTEM = "user", "assistant", "observation", "function", "system"


def stage_kind(stage: str) -> str:
    """Which LLaMA-Factory processor reads the data: supervised, pairwise or pretrain."""
    if stage in ("rm", "dpo"):
        return "pairwise"
    if stage == "pt":
        return "pretrain"
    return "supervised"  # sft; kto and ppo read prompts alike for length purposes


def missing_columns(table: Table, attr: DatasetAttr, kind: str) -> list[Problem]:
    """Columns the entry names (or defaults to) that no row has: LLaMA-Factory stops with ``KeyError``."""
    used: list[tuple[str, str]] = []
    if attr.formatting == "alpaca":
        names = ["history", "prompt", "query", "kto_tag", "response", "system", "tools", "images", "videos", "audios"]
    else:
        names = ["messages", "system", "tools", "kto_tag", "images", "videos", "audios"]
    if attr.ranking:
        names += ["chosen", "rejected"]
    for role in names:
        col = getattr(attr, role)
        if col is not None:
            used.append((role, col))
    out: list[Problem] = []
    if attr.ranking and (attr.chosen is None or attr.rejected is None):
        out.append(Problem(attr.name, "missing-column",
                           "a ranking dataset needs `chosen` and `rejected` in its `columns`; LLaMA-Factory stops with "
                           "KeyError", hint="name the chosen/rejected columns in dataset_info.json"))  # fmt: skip
    if not table.rows:
        return out
    for role, col in used:
        if col in table.columns:
            continue
        hint = f'add "{col}" to every row, or map `{role}` to an existing column in dataset_info.json `columns`'
        if attr.formatting == "alpaca" and role == "query" and "columns" not in attr.raw:
            hint = (f'no row has "{col}": add `"columns": {{"prompt": "{attr.prompt}", "response": "{attr.response}"}}` '
                    "to the entry in dataset_info.json (columns it does not name are not read)")  # fmt: skip
        have = ", ".join(sorted(table.columns)[:8]) or "none"
        out.append(Problem(attr.name, "missing-column",
                           f"column \"{col}\" (`{role}`) is in no row (columns: {have}); LLaMA-Factory stops with "
                           f"KeyError: '{col}'", hint=hint))  # fmt: skip
    return out


def convert(table: Table, attr: DatasetAttr, kind: str) -> tuple[list[Sample], list[Problem], int]:
    """All usable samples, the problems found, and how many rows carry images/videos/audios."""
    problems = missing_columns(table, attr, kind)
    if any(p.fatal for p in problems) or not table.rows:
        return [], problems, 0
    rows = RowProblems(attr.name)
    samples = _alpaca(table, attr, kind, rows) if attr.formatting == "alpaca" else _sharegpt(table, attr, kind, rows)
    media = 0
    cols = [c for c in (attr.images, attr.videos, attr.audios) if c]
    if cols:
        media = sum(1 for r in table.rows if any(r.get(c) for c in cols))
    problems += rows.finish(table.locate, len(table.rows))
    return samples, problems, media


def _tools(ex: dict[str, Any], col: str | None, i: int, rp: RowProblems) -> str | None:
    """The tools column as text; None (and a fatal problem) when LLaMA-Factory cannot parse it."""
    tools = ex.get(col) if col else ""
    if not tools:
        return ""
    if not isinstance(tools, str):  # HF datasets would keep a JSON structure; LLaMA-Factory expects text
        rp.add(i, "malformed-row", f"a non-string \"{col}\"; LLaMA-Factory stops (it json.loads the text)", fatal=True)
        return None
    try:
        json.loads(tools)
    except json.JSONDecodeError:
        rp.add(i, "malformed-row", f"\"{col}\" that is not JSON; LLaMA-Factory stops (\"Invalid JSON format in tool "
               "description\")", fatal=True)  # fmt: skip
        return None
    return tools


def _text_ok(v: Any) -> bool:
    return isinstance(v, str)


def _alpaca(table: Table, attr: DatasetAttr, kind: str, rp: RowProblems) -> list[Sample]:
    out: list[Sample] = []
    p_col, q_col, r_col, h_col = attr.prompt, attr.query, attr.response, attr.history
    s_col, t_col = attr.system, attr.tools
    c_col, x_col = attr.chosen, attr.rejected
    ranking = attr.ranking
    fatal = "LLaMA-Factory stops with TypeError"
    for i, ex in enumerate(table.rows):
        messages: list[Message] = []
        hist = ex.get(h_col) if h_col else None
        if h_col and isinstance(hist, list):
            ok = True
            for pair in hist:
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    rp.add(i, "malformed-row", f"`{h_col}` items that are not [prompt, response] pairs; "
                           "LLaMA-Factory stops with ValueError", fatal=True)  # fmt: skip
                    ok = False
                    break
                if not (_text_ok(pair[0]) and _text_ok(pair[1])):
                    rp.add(i, "malformed-row", f"`{h_col}` pairs with a non-string entry; LLaMA-Factory stops "
                           "(\"Expected a string\")", fatal=True)  # fmt: skip
                    ok = False
                    break
                messages.append((USER, pair[0]))
                messages.append((ASSISTANT, pair[1]))
            if not ok:
                continue
        query = []
        pv = ex.get(p_col) if p_col else None
        qv = ex.get(q_col) if q_col else None
        if pv:
            query.append(pv)
        if qv:
            query.append(qv)
        if any(not isinstance(q, str) for q in query):
            bad = p_col if pv and not isinstance(pv, str) else q_col
            rp.add(i, "malformed-row", f"a non-string \"{bad}\"; {fatal}", fatal=True)
            continue
        messages.append((USER, "\n".join(query)))
        system = ex.get(s_col) if s_col else ""
        if system and not isinstance(system, str):
            rp.add(i, "malformed-row", f"a non-string \"{s_col}\"; LLaMA-Factory stops (\"Expected a string\")", fatal=True)
            continue
        tools = _tools(ex, t_col, i, rp)
        if tools is None:
            continue
        if kind == "pretrain":
            out.append((system, tools, messages[:1], None))
            continue
        chosen = ex.get(c_col) if c_col else None
        rejected = ex.get(x_col) if x_col else None
        if ranking and isinstance(chosen, str) and isinstance(rejected, str):
            if kind == "pairwise":
                out.append((system, tools, messages, [(ASSISTANT, chosen), (ASSISTANT, rejected)]))
            else:
                rp.add(i, "dropped-row", "a chosen/rejected pair where one response is expected; LLaMA-Factory "
                       "drops it (\"Dropped invalid example\")", fatal=False)  # fmt: skip
            continue
        rv = ex.get(r_col) if r_col else None
        if not isinstance(rv, str):
            what = f"no string \"{r_col}\"" if r_col else "no response column"
            if kind == "pairwise":
                what = f"no string \"{c_col}\" and \"{x_col}\""
            rp.add(i, "dropped-row", f"{what}; LLaMA-Factory drops these rows (\"Dropped invalid example\")", fatal=False)
            continue
        if kind == "pairwise":
            rp.add(i, "dropped-row", "a single response where a chosen/rejected pair is expected; LLaMA-Factory drops "
                   "it", fatal=False)  # fmt: skip
            continue
        messages.append((ASSISTANT, rv))
        out.append((system, tools, messages, None))
    return out


def _sharegpt(table: Table, attr: DatasetAttr, kind: str, rp: RowProblems) -> list[Sample]:
    out: list[Sample] = []
    m_col, role_tag, content_tag = attr.messages, attr.role_tag, attr.content_tag
    # The same dict LLaMA-Factory builds: with `tags` that leave some unset, None keys collide like there.
    tag_mapping = {
        attr.user_tag: USER, attr.assistant_tag: ASSISTANT, attr.observation_tag: OBSERVATION,
        attr.function_tag: FUNCTION, attr.system_tag: SYSTEM,
    }  # fmt: skip
    odd_tags = (attr.user_tag, attr.observation_tag)
    even_tags = (attr.assistant_tag, attr.function_tag)
    accept = (odd_tags, even_tags)
    system_tag = attr.system_tag
    ranking = attr.ranking
    names = f"{attr.user_tag}|{attr.observation_tag} then {attr.assistant_tag}|{attr.function_tag}"
    for i, ex in enumerate(table.rows):
        msgs = ex.get(m_col) if m_col else None
        if not isinstance(msgs, list):
            rp.add(i, "malformed-row", f"\"{m_col}\" that is not a list; LLaMA-Factory stops with TypeError", fatal=True)
            continue
        if any(not isinstance(m, dict) for m in msgs):
            rp.add(i, "malformed-row", f"\"{m_col}\" items that are not objects; LLaMA-Factory stops with TypeError",
                   fatal=True)  # fmt: skip
            continue
        if system_tag and msgs and msgs[0].get(role_tag) == system_tag:
            system = msgs[0].get(content_tag)
            msgs = msgs[1:]
        else:
            system = ex.get(attr.system) if attr.system else ""
        if system and not isinstance(system, str):
            rp.add(i, "malformed-row", "a non-string system prompt; LLaMA-Factory stops (\"Expected a string\")", fatal=True)
            continue
        aligned: list[Message] = []
        broken = ""
        for turn, m in enumerate(msgs):
            role = m.get(role_tag)
            if role not in accept[turn % 2]:
                broken = f"roles out of order (expected {names}, alternating)"
                break
            aligned.append((tag_mapping[role], m.get(content_tag)))
        if not broken and ((not ranking and len(aligned) % 2 != 0) or (ranking and len(aligned) % 2 == 0)):
            broken = "an odd number of messages (the last one has no answer)" if not ranking else (
                "an even number of messages before chosen/rejected")
        if broken:
            rp.add(i, "dropped-row", f"{broken}; LLaMA-Factory drops these rows (\"Invalid role tag\"/\"Invalid "
                   "message count\")", fatal=False)  # fmt: skip
            continue
        if not aligned and not ranking:
            rp.add(i, "dropped-row", f"an empty \"{m_col}\"; LLaMA-Factory drops these rows", fatal=False)
            continue
        bad = next((r for r, c in aligned if not isinstance(c, str)), None)
        if bad is not None:
            rp.add(i, "malformed-row", f"a message whose \"{content_tag}\" is not a string; LLaMA-Factory stops "
                   "(\"Expected a string\")", fatal=True)  # fmt: skip
            continue
        if any(r == SYSTEM for r, _ in aligned):
            rp.add(i, "malformed-row", "a role that maps to `system` inside the conversation (check `tags`); "
                   "LLaMA-Factory stops (\"Unexpected role\")", fatal=True)  # fmt: skip
            continue
        tools = _tools(ex, attr.tools, i, rp)
        if tools is None:
            continue
        bad_call = False
        for r, c in aligned:
            if r == FUNCTION:
                try:
                    _calls(c)
                except ToolFormatError as exc:
                    rp.add(i, "malformed-row", f"a function call that LLaMA-Factory cannot parse ({exc}); it stops "
                           "(\"Invalid JSON format in function message\")", fatal=True)  # fmt: skip
                    bad_call = True
                    break
        if bad_call:
            continue
        if kind == "pretrain":
            out.append((system, tools, aligned[:1], None))
        elif kind == "pairwise":
            ch = ex.get(attr.chosen) if attr.chosen else None
            rj = ex.get(attr.rejected) if attr.rejected else None
            if not (isinstance(ch, dict) and isinstance(rj, dict)) or not ranking:
                rp.add(i, "dropped-row", "no chosen/rejected messages; LLaMA-Factory drops these rows", fatal=False)
                continue
            cc, rc = ch.get(content_tag), rj.get(content_tag)
            if not (isinstance(cc, str) and isinstance(rc, str)):
                rp.add(i, "malformed-row", "chosen/rejected without string content; LLaMA-Factory stops", fatal=True)
                continue
            out.append((system, tools, aligned, [(ASSISTANT, cc), (ASSISTANT, rc)]))
        else:
            out.append((system, tools, aligned, None))
    return out
