"""Prefix-cache counters scraped from the ENGINES' own ``/metrics`` (vLLM names), before and after a level.

Hit rate over a level = Δ ``vllm:prefix_cache_hits_total`` / Δ ``vllm:prefix_cache_queries_total``, both in tokens,
summed over every engine and every label set.

From OUR router's ``/metrics``, when it is the target: its prefix-affinity-filter choices
(``kserve_llmd_router_prefix_affinity_decisions_total{decision="kept"|"yielded"}``), so a level reports how often
the router left the endpoints that cached the prompt because of their load.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"
AFFINITY = "kserve_llmd_router_prefix_affinity_decisions_total"


@dataclass(frozen=True, slots=True)
class PrefixCounters:
    hits: float
    queries: float

    def __sub__(self, other: PrefixCounters) -> PrefixCounters:
        return PrefixCounters(self.hits - other.hits, self.queries - other.queries)

    @property
    def hit_rate(self) -> float | None:
        return None if self.queries <= 0 else self.hits / self.queries


def metrics_url(url: str) -> str:
    """An engine base URL gets ``/metrics`` appended; a URL with a path is used as given."""
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + "/metrics"


def parse_prefix_counters(text: str) -> PrefixCounters:
    hits = queries = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == HITS:
                hits += sample.value
            elif sample.name == QUERIES:
                queries += sample.value
    return PrefixCounters(hits, queries)


async def _metrics_text(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(metrics_url(url), timeout=aiohttp.ClientTimeout(total=10)) as response:
        response.raise_for_status()
        return await response.text()


async def scrape(session: aiohttp.ClientSession, urls: list[str]) -> PrefixCounters:
    """Sum of the counters over all engines. Raises ``aiohttp.ClientError`` / ``ValueError`` when one fails."""
    parts = [parse_prefix_counters(text) for text in await asyncio.gather(*(_metrics_text(session, url)
                                                                             for url in urls))]
    return PrefixCounters(sum(p.hits for p in parts), sum(p.queries for p in parts))


@dataclass(frozen=True, slots=True)
class AffinityCounters:
    kept: float
    yielded: float

    def __sub__(self, other: AffinityCounters) -> AffinityCounters:
        return AffinityCounters(self.kept - other.kept, self.yielded - other.yielded)


def parse_affinity(text: str) -> AffinityCounters | None:
    """The router's affinity choices; None when the text has no such series (an engine, or another router)."""
    found = False
    counts = {"kept": 0.0, "yielded": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == AFFINITY and sample.labels.get("decision") in counts:
                found = True
                counts[sample.labels["decision"]] += sample.value
    return AffinityCounters(counts["kept"], counts["yielded"]) if found else None


async def scrape_affinity(session: aiohttp.ClientSession, url: str) -> AffinityCounters | None:
    """``parse_affinity`` of the router at ``url`` (its base URL). Raises like ``scrape``."""
    return parse_affinity(await _metrics_text(session, url))
