"""Gene search and list parsing for the gene picker (plain Python, no Qt).

Search ranks exact matches first, then prefixes, then substrings, all case-insensitive; pasted lists
are split on commas, semicolons and white space, matched case-insensitively, and unknown names come
back with their close matches.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field


def search_genes(genes, query: str, limit: int = 200) -> list[str]:
    """Genes matching ``query``: exact, then prefix, then substring matches (case-insensitive).

    Within each group genes keep their alphabetical order. An empty query returns ``[]``.
    """
    q = query.strip().upper()
    if not q:
        return []
    exact, prefix, inner = [], [], []
    for g in genes:
        u = g.upper()
        if u == q:
            exact.append(g)
        elif u.startswith(q):
            prefix.append(g)
        elif q in u:
            inner.append(g)
    return (sorted(exact) + sorted(prefix) + sorted(inner))[:limit]


def suggest(name: str, genes, n: int = 3) -> list[str]:
    """Close matches of ``name`` among ``genes`` (case-insensitive first, then spelling)."""
    upper = {}
    for g in genes:
        upper.setdefault(g.upper(), g)
    if name.upper() in upper:
        return [upper[name.upper()]]
    hits = difflib.get_close_matches(name.upper(), list(upper), n=n, cutoff=0.6)
    return [upper[h] for h in hits]


@dataclass
class ParsedGenes:
    """Result of :func:`parse_gene_list`.

    Attributes
    ----------
    found
        Known genes in the order given (duplicates dropped), spelled as in the slide.
    unknown
        Unknown name -> close matches (possibly empty).
    """

    found: list[str] = field(default_factory=list)
    unknown: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> str:
        """One line describing the unknown names and their close matches ("" when none)."""
        if not self.unknown:
            return ""
        parts = []
        for name, close in self.unknown.items():
            parts.append(f"{name} (did you mean {', '.join(close)}?)" if close else f"{name} (no close match)")
        return "unknown gene(s): " + "; ".join(parts)


def parse_gene_list(text: str, genes) -> ParsedGenes:
    """Parse a pasted list of gene names against the slide's ``genes``.

    Exact names are taken as they are; a name that differs only in case is mapped to the slide's
    spelling; anything else is reported with close matches.
    """
    exact = set(genes)
    upper = {}
    for g in genes:
        upper.setdefault(g.upper(), g)
    out = ParsedGenes()
    seen = set()
    for token in re.split(r"[\s,;]+", text.strip()):
        token = token.strip().strip("'\"")
        if not token:
            continue
        name = token if token in exact else upper.get(token.upper())
        if name is None:
            out.unknown[token] = suggest(token, genes)
        elif name not in seen:
            seen.add(name)
            out.found.append(name)
    return out
