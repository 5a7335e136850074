#!/usr/bin/env python3
"""How precise `cfglint check` is on LLaMA-Factory configs that people really wrote.

Lints every YAML of a corpus folder one file at a time, the way a pre-commit user with no extra flags runs it
(`cfglint check --isolated --format json FILE` in a fresh process, from the folder that holds the file), and
reports:

- files per exit code, and for every exit-2 file the first line cfglint wrote to stderr (or the file error of
  its JSON report when stderr is empty);
- findings per rule and severity;
- against a judgements file: per rule, how many warning and error findings were judged true, judged false or
  not judged, and the precision of the judged ones (true / (true + false)).

The corpus is other people's files, so it lives outside this repository:

    DIR/configs/*.yaml      the configs (or DIR/*.yaml)
    DIR/manifest.json       [{"file", "repo", "path", "commit"}, ...]: where each file comes from

Judgements (`benchmarks/real_configs_judgements.json` by default) are a list of
{"repo", "path", "commit", "code", "key", "line", "verdict": "true"|"false", "reason"}, one per judged
finding, each reason citing the upstream source (file and function at a release tag). A judgement matches a
finding by (repo, path, code, key); `line` only breaks ties when one file has several findings with the same
code and key. Judgements that match no finding any more are listed as stale, so a rule change that removes
or moves a finding shows up.

    python benchmarks/real_configs.py /work/corpus
    python benchmarks/real_configs.py /work/corpus --json out.json --sources
    python benchmarks/real_configs.py /work/corpus --cfglint "python -m tuner.cli.entry"

Prints Markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JUDGEMENTS = ROOT / "benchmarks" / "real_configs_judgements.json"
JUDGED_SEVERITIES = ("error", "warning")
TIMEOUT_EXIT = "timeout"


def default_cfglint() -> list[str]:
    """The project's own venv first (what the rest of the benchmarks measure), else whatever is on PATH."""
    venv = ROOT / ".venv" / "bin" / "cfglint"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("cfglint")
    if found:
        return [found]
    raise SystemExit("no cfglint found: pass --cfglint CMD")


@dataclass
class Source:
    """Where a corpus file comes from."""

    repo: str
    path: str
    commit: str


@dataclass
class Finding:
    """One violation from cfglint's JSON report, with the file's source."""

    file: str
    source: Source
    code: str
    name: str
    severity: str
    key: str | None
    line: int | None
    message: str
    verdict: str | None = None  # "true", "false" or None (not judged)
    reason: str | None = None


@dataclass
class FileResult:
    """What one cfglint run on one file gave."""

    file: str
    source: Source
    exit: int | str
    seconds: float
    stderr_first: str | None = None
    error: str | None = None
    not_a_config: bool = False
    rule_errors: list[Any] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def corpus_files(directory: Path) -> list[Path]:
    base = directory / "configs" if (directory / "configs").is_dir() else directory
    return sorted(p for p in base.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def load_manifest(directory: Path) -> dict[str, Source]:
    path = directory / "manifest.json"
    if not path.exists():
        return {}
    return {
        e["file"]: Source(e.get("repo", "?"), e.get("path", e["file"]), e.get("commit", "?"))
        for e in json.loads(path.read_text())
    }


def first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def lint_one(cmd: list[str], path: Path, source: Source, timeout: float) -> FileResult:
    """Run cfglint on one file from its own folder, as a hook would run it on a file of the checked-out repo."""
    argv = [*cmd, "check", "--isolated", "--format", "json", path.name]
    env = dict(os.environ, NO_COLOR="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=path.parent, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return FileResult(path.name, source, TIMEOUT_EXIT, time.perf_counter() - start,
                          stderr_first=first_line(err) or f"no result within {timeout:g} s")
    result = FileResult(path.name, source, proc.returncode, time.perf_counter() - start,
                        stderr_first=first_line(proc.stderr))
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        result.error = "stdout is not JSON: " + (first_line(proc.stdout) or "")
        return result
    result.summary = report.get("summary", {})
    for entry in report.get("files", []):
        err = entry.get("error")
        if err:
            result.error = err.get("message") if isinstance(err, dict) else str(err)
        result.not_a_config = result.not_a_config or bool(entry.get("not_a_config"))
        result.rule_errors.extend(entry.get("rule_errors") or [])
        for v in entry.get("violations", []):
            result.findings.append(Finding(
                file=path.name, source=source, code=v.get("code", "?"), name=v.get("name", ""),
                severity=v.get("severity", "?"), key=v.get("key"), line=v.get("line"),
                message=v.get("message", ""),
            ))
    return result


def judgement_key(repo: str, path: str, code: str, key: str | None) -> tuple[str, str, str, str]:
    return (repo, path, code, key or "")


def apply_judgements(results: list[FileResult], judgements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Attach verdicts to warning/error findings; return the judgements that matched nothing (stale)."""
    pool: dict[tuple[str, str, str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for j in judgements:
        pool[judgement_key(j["repo"], j["path"], j["code"], j.get("key"))].append(j)
    for r in results:
        for f in r.findings:
            if f.severity not in JUDGED_SEVERITIES:
                continue
            cands = pool.get(judgement_key(f.source.repo, f.source.path, f.code, f.key))
            if not cands:
                continue
            # Same line first; else the nearest line, so an edit above the key does not orphan the verdict.
            best = min(cands, key=lambda j: (j.get("line") != f.line, abs((j.get("line") or 0) - (f.line or 0))))
            cands.remove(best)
            f.verdict, f.reason = best["verdict"], best.get("reason")
    return [j for cands in pool.values() for j in cands]


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def report(results: list[FileResult], judged: bool, stale: list[dict[str, Any]], sources: bool,
           cmd: list[str]) -> str:
    out: list[str] = []
    n = len(results)
    findings = [f for r in results for f in r.findings]
    out.append(f"{n} configs from {len({r.source.repo for r in results})} repositories, "
               f"`{' '.join(shlex.quote(c) for c in cmd)} check --isolated --format json FILE`, "
               f"one process per file, run from the file's folder; {len(findings)} findings.")
    versions = {json.dumps(r.summary.get(k), sort_keys=True)
                for r in results for k in ("versions", "target", "targets") if r.summary.get(k)}
    if versions:
        out.append(f"Versions assumed (from the report summary): {', '.join(sorted(versions))}.")
    out.append("")

    out.append("### Exit codes\n")
    codes = collections.Counter(str(r.exit) for r in results)
    out.append(md_table(["exit", "files"], [[k, v] for k, v in sorted(codes.items())]))
    bad = [r for r in results if r.exit not in (0, 1)]
    if bad:
        out.append("\nFiles that stopped (exit 2 or timeout), with the first stderr line (else the report's file error):\n")
        for r in bad:
            why = r.stderr_first or r.error or "(no message)"
            out.append(f"- `{r.source.repo}` `{r.source.path}` (exit {r.exit}): {why}")
    other = [r for r in results if r.rule_errors]
    if other:
        out.append(f"\n{len(other)} files had rule crashes (`rule_errors`): "
                   + ", ".join(f"`{r.file}`" for r in other[:10]))
    skipped = [r for r in results if r.not_a_config]
    if skipped:
        out.append(f"\n{len(skipped)} files were skipped as not LLaMA-Factory configs: "
                   + ", ".join(f"`{r.file}`" for r in skipped))
    out.append("")

    out.append("### Findings per rule\n")
    by_rule: dict[str, list[Finding]] = collections.defaultdict(list)
    for f in findings:
        by_rule[f.code].append(f)
    rows = []
    tot = collections.Counter()
    for code in sorted(by_rule):
        fs = by_rule[code]
        sev = collections.Counter(f.severity for f in fs)
        ew = [f for f in fs if f.severity in JUDGED_SEVERITIES]
        t = sum(f.verdict == "true" for f in ew)
        fa = sum(f.verdict == "false" for f in ew)
        u = len(ew) - t - fa
        tot.update(error=sev["error"], warning=sev["warning"], info=sev["info"], true=t, false=fa, unjudged=u,
                   files=len({f.file for f in fs}))
        row = [f"{code}", fs[0].name, len({f.file for f in fs}), sev["error"], sev["warning"], sev["info"]]
        if judged:
            row += [t, fa, u, pct(t, t + fa)]
        rows.append(row)
    header = ["rule", "name", "files", "error", "warning", "info"]
    if judged:
        header += ["true", "false", "unjudged", "precision"]
    total = ["**total**", "", "", tot["error"], tot["warning"], tot["info"]]
    if judged:
        total += [tot["true"], tot["false"], tot["unjudged"], pct(tot["true"], tot["true"] + tot["false"])]
    rows.append(total)
    out.append(md_table(header, rows))
    if judged:
        ew_total = tot["error"] + tot["warning"]
        out.append(f"\nPrecision of warning and error findings: **{pct(tot['true'], tot['true'] + tot['false'])}** "
                   f"({tot['true']} true, {tot['false']} false of {tot['true'] + tot['false']} judged; "
                   f"{tot['unjudged']} of {ew_total} not judged). Info findings are not judged.")
        stopped = {(r.source.repo, r.source.path) for r in results if r.exit not in (0, 1)}
        linted = {(r.source.repo, r.source.path) for r in results}
        unreached = [j for j in stale if (j["repo"], j["path"]) in stopped]
        absent = [j for j in stale if (j["repo"], j["path"]) not in linted]
        gone = [j for j in stale if j not in unreached and j not in absent]
        if unreached:
            n_true = sum(j["verdict"] == "true" for j in unreached)
            out.append(f"\n{len(unreached)} judgements are for findings in files that stopped with exit 2 "
                       f"({n_true} true, {len(unreached) - n_true} false): not reached in this run.")
        if absent:
            out.append(f"\n{len(absent)} judgements are for files not in this corpus folder.")
        if gone:
            out.append(f"\n{len(gone)} judgements match no finding now (the rule no longer fires there, "
                       "or its code or key changed):\n")
            for j in gone:
                out.append(f"- {j['code']} `{j.get('key')}` line {j.get('line')} in `{j['repo']}` `{j['path']}` "
                           f"(was judged {j['verdict']})")
    if sources:
        out.append("\n### Judged findings and their sources\n")
        srows = []
        for f in sorted(findings, key=lambda f: (f.code, f.source.repo, f.source.path, f.line or 0)):
            if f.severity not in JUDGED_SEVERITIES:
                continue
            srows.append([f.code, f.verdict or "-", f"`{f.key or ''}`", f.source.repo,
                          f"{f.source.path}@{f.source.commit[:10]}", f.line or "", (f.reason or "").replace("|", "\\|")])
        out.append(md_table(["rule", "verdict", "key", "repository", "path@commit", "line", "reason"], srows))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="corpus folder: DIR/configs/*.yaml (or DIR/*.yaml) and DIR/manifest.json")
    ap.add_argument("--judgements", type=Path, default=DEFAULT_JUDGEMENTS,
                    help=f"judgements JSON (default: {DEFAULT_JUDGEMENTS.relative_to(ROOT)}; skipped if absent)")
    ap.add_argument("--json", dest="json_out", type=Path, help="also write every file's result and finding here")
    ap.add_argument("--cfglint", help="command that runs cfglint (default: .venv/bin/cfglint, else PATH)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per file (default 60)")
    ap.add_argument("--sources", action="store_true",
                    help="also list every warning/error finding with its repository, path@commit and verdict")
    args = ap.parse_args(argv)

    cmd = shlex.split(args.cfglint) if args.cfglint else default_cfglint()
    files = corpus_files(args.dir)
    if not files:
        raise SystemExit(f"no *.yaml or *.yml in {args.dir}")
    manifest = load_manifest(args.dir)
    results = []
    for i, p in enumerate(files, 1):
        src = manifest.get(p.name, Source("?", p.name, "?"))
        results.append(lint_one(cmd, p, src, args.timeout))
        if sys.stderr.isatty():
            print(f"\r{i}/{len(files)} linted", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)

    judged = args.judgements.exists()
    stale: list[dict[str, Any]] = []
    if judged:
        stale = apply_judgements(results, json.loads(args.judgements.read_text()))
    print(report(results, judged, stale, args.sources, cmd))

    if args.json_out:
        def enc(o: Any) -> Any:
            return o.__dict__
        args.json_out.write_text(json.dumps({"cfglint": cmd, "results": results}, default=enc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
