"""The crawl stage (SPEC §5), first in a job's chain: run the job's `crawl:` entries (Glue crawler semantics)
so that extract sees an up-to-date catalog. A crawler that ends FAILED fails the job in stage `crawl`."""

from __future__ import annotations

from typing import Any

from etl_framework.catalog.crawler import CrawlerRunResult, run_crawler
from etl_framework.errors import JobFailed


def crawler_name(job: str, spec: Any) -> str:
    """The crawler's identity (its memory of the files it has read): job, database and table or path."""
    return f"{job}.{spec.database}.{spec.table or spec.source or spec.path}"


def run_crawl(state: Any) -> list[CrawlerRunResult]:
    from etl_framework.catalog import catalog_for

    cfg = state.config if hasattr(state, "config") else state.loaded.config
    if not cfg.crawl:
        return []
    catalog = getattr(state, "catalog", None) or catalog_for(state.env_config, getattr(state, "project_root", None))
    log = getattr(state, "log", None)
    progress = (lambda m: log.info(m, "crawl")) if hasattr(log, "info") else None
    results: list[CrawlerRunResult] = []
    for spec in cfg.crawl:
        if spec.source:
            src = cfg.sources.get(spec.source)
            if src is None:
                raise JobFailed(cfg.job, "crawl", f"crawl entry names source '{spec.source}', which the job does "
                                "not have", f"use one of: {', '.join(cfg.sources)}")
            if not src.path:
                raise JobFailed(cfg.job, "crawl", f"source '{spec.source}' has no path to crawl (format "
                                f"{src.format})", "crawl a path instead: `path: ...`")
            path = src.path
        else:
            path = spec.path or ""
        res = run_crawler(catalog, state.env_config, crawler_name(cfg.job, spec), path, spec.database,
                          spec.table, spec.schema_change, aws=state.env_config.aws, progress=progress)
        results.append(res)
        if res.state != "SUCCEEDED":
            msg, _, hint = res.message.partition("\n  what to do: ")
            raise JobFailed(cfg.job, "crawl", f"crawler {res.crawler} {res.state}: {msg}", hint)
    metrics = getattr(state, "metrics", None)
    if isinstance(metrics, dict):
        metrics.setdefault("crawl", {})["crawlers"] = [r.to_dict() for r in results]
    return results
