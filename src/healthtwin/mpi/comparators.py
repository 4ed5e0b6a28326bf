"""String and date comparisons in Python, as DuckDB computes them in SQL (`jaro_winkler_similarity`,
`damerau_levenshtein`), so `$match` scores a pair exactly as the batch deduplication does."""
from __future__ import annotations


def jaro_winkler(a: str, b: str, prefix_scale: float = 0.1) -> float:
    """Jaro–Winkler similarity in [0, 1] (Winkler's boost over a common prefix of up to 4 characters)."""
    if a == b:
        return 1.0
    la, lb = len(a), len(b)
    if not la or not lb:
        return 0.0
    window = max(max(la, lb) // 2 - 1, 0)
    a_hit, b_hit = [False] * la, [False] * lb
    matches = 0
    for i, ch in enumerate(a):
        lo, hi = max(0, i - window), min(i + window + 1, lb)
        for j in range(lo, hi):
            if not b_hit[j] and b[j] == ch:
                a_hit[i] = b_hit[j] = True
                matches += 1
                break
    if not matches:
        return 0.0
    transpositions, k = 0, 0
    for i in range(la):
        if a_hit[i]:
            while not b_hit[k]:
                k += 1
            if a[i] != b[k]:
                transpositions += 1
            k += 1
    m = float(matches)
    jaro = (m / la + m / lb + (m - transpositions / 2) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


def damerau_levenshtein(a: str, b: str) -> int:
    """Edits (insertion, deletion, substitution, adjacent transposition) from `a` to `b` (optimal string
    alignment, as DuckDB's damerau_levenshtein)."""
    la, lb = len(a), len(b)
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[lb]


def swapped_day_month(a: str, b: str) -> bool:
    """Two YYYY-MM-DD dates of one year whose day and month are each other's."""
    return a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7] and a != b


def estimated_january(a: str, b: str) -> bool:
    """One of two dates of the same year is 1 January: the age was estimated, not the birthday recorded."""
    return a[:4] == b[:4] and ("01-01" in (a[5:], b[5:]))
