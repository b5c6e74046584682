"""The registrable domain of a DNS name: who the owner paid for the name.

A home owner wants "example-cdn.net", not a hundred "edge-17.video.
example-cdn.net" lines. The exact answer needs the Public Suffix List (about
230 KB of text, 9,000+ rules): too much flash and RAM for a router, and its
"private" section would split what owners think of as one company
(d111.cloudfront.net and d222.cloudfront.net are two registrable domains
there; here both count as cloudfront.net, which is what the owner wants to
see in a digest).

The rule, in order:
1. an IP address literal or a name of one label ("printer", "localhost")
   is its own registrable domain;
2. a name ending in one of MULTI_SUFFIXES (public suffixes of two or three
   labels that do not fit rule 3) keeps one label more than that suffix;
3. under a two-letter country TLD, when the second-to-last label is one of
   the short generic labels in GENERIC_SECOND (co, com, net, org, ac,
   gov, ...), three labels are kept: bbc.co.uk, abc.net.au, sony.co.jp;
4. otherwise the last two labels: video.example-cdn.net -> example-cdn.net.

Rule 3 is a heuristic: it is right for the common ccTLDs that register
under second-level labels (uk, au, nz, jp, br, za, in, ...) and wrong for
a real domain named, say, co.de (rare; the table below can list such
exceptions in NOT_SUFFIXES).
"""

# second-level labels that, under a two-letter ccTLD, are public suffixes
GENERIC_SECOND = (
    "ac", "co", "com", "edu", "gob", "go", "gov", "govt", "ltd", "me", "mil",
    "ne", "net", "nhs", "nic", "nom", "or", "org", "plc", "sch", "web",
)

# public suffixes rule 3 does not find: (suffix, labels kept in total)
MULTI_SUFFIXES = {
    "co.com": 3,
    "com.de": 3,
    "k12.ca.us": 4,
    "lg.jp": 3,
    "police.uk": 3,
    "blogspot.com": 3,  # one of the few private suffixes people see daily
}

# two-label names rule 3 would take for a suffix but that are registered domains
NOT_SUFFIXES = ("co.de",)

_IP_CHARS = "0123456789."


def _is_ip(name):
    if ":" in name:
        return True
    for c in name:
        if c not in _IP_CHARS:
            return False
    return True


def registrable(name):
    """'video.example-cdn.net.' -> 'example-cdn.net'; lower case, no dot at
    the end. Never raises for a string; '' stays ''."""
    name = name.lower().rstrip(".")
    if not name or _is_ip(name):
        return name
    labels = name.split(".")
    n = len(labels)
    if n < 2:
        return name
    for suffix, keep in MULTI_SUFFIXES.items():
        if name == suffix or name.endswith("." + suffix):
            return ".".join(labels[-keep:]) if n >= keep else name
    keep = 2
    if (n >= 3 and len(labels[-1]) == 2 and labels[-2] in GENERIC_SECOND
            and ".".join(labels[-2:]) not in NOT_SUFFIXES):
        keep = 3
    return ".".join(labels[-keep:])
