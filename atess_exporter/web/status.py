"""The status pages: `/` (the whole fleet, read in five seconds) and `/device?sn=` (one device).

They read the store only (live/store.py: devices, topology, auth and discovery
state), never the poller or the API. The fleet page puts first what stops
everything (a banner: credentials refused, discovery failing, polling behind
schedule), then counts by state, then the devices, problems first, each with its
reason in words (web/states.py); `?state=`, `?plant=` and `?page=` filter and page
it with plain links, no script. A page holds at most PAGE_SIZE devices, so 10,000
devices are a few pages of ~50 KB, never a megabyte.

/healthz stays 200 while the API refuses the credentials: it is the container's
health check, and restarting the exporter does not mend a token; the banner here,
atess_api_auth_ok 0 and the log line say so instead.

Every text from the API or the config (SNs, models, plant names, error texts)
is hostile: it passes outside/text.py's html_text (one bounded printable line,
escaped) after the configured credentials are masked.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Callable, Iterable
from urllib.parse import parse_qs, quote, urlencode

from atess_exporter.catalog import Catalog
from atess_exporter.config import PollConfig
from atess_exporter.live.store import Cache, DeviceSnapshot, PollStats, Trouble
from atess_exporter.outside.text import Redactor, html_text
from atess_exporter.web.states import PROBLEMS, STATES, Verdict, age_words, offline_datalogs, split_error, verdict
from atess_exporter.web import devicepage

PAGE_SIZE = 100          # devices per page
TOP_PLANTS = 12          # plants listed in the summary (those with the most problems first)
MAX_QUERY = 1024         # a longer query string is ignored, not parsed
MAX_MESSAGE = 300        # characters of an API message shown


def query_args(query: str) -> dict[str, str]:
    """The first value of each parameter of a (hostile) query string."""
    if len(query) > MAX_QUERY:
        return {}
    return {k: v[0] for k, v in parse_qs(query, max_num_fields=16).items() if v}


def when(ts: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))
    return f"{stamp} ({age_words(max(0.0, now - ts))} ago)"


def plant_of(dev: DeviceSnapshot) -> tuple[str, str]:
    """(key for ?plant=, name shown): the plant id, or the name where no id is known."""
    pid, name = dev.info.get("plant_id", ""), dev.info.get("plant_name", "")
    return (pid or name), (name or pid)


class StatusPages:
    def __init__(self, store: Cache, poll: PollConfig, catalog: Catalog, secrets: Iterable[str] = (),
                 demo: bool = False, clock: Callable[[], float] = time.time):
        self.store = store
        self.poll = poll
        self.catalog = catalog
        self.redact = Redactor(secrets)
        self.demo = demo
        self.clock = clock

    def text(self, value: object, limit: int = MAX_MESSAGE) -> str:
        """Outside text for the page: credentials masked, one bounded line, escaped."""
        return html_text(self.redact.scrub(str(value)), limit)

    # -- what stops everything -------------------------------------------------------------

    def banners(self, devices: list[DeviceSnapshot], now: float) -> list[str]:
        """What stops an account's devices, per account ("Account north: ..." when there are several)."""
        out = []
        accounts = self.store.accounts()
        for account in accounts:
            whose = f"Account {self.text(account.name)}: " if len(accounts) > 1 else ""
            own = [d for d in devices if d.info.get("account", account.name) == account.name]
            refused = account.auth_refused
            if refused is not None:
                key = f"accounts[].token</code> of {self.text(account.name)}" if whose else "atess.token</code>"
                out.append(self._banner(
                    f"{whose}The ATESS API refuses the credentials", refused, now,
                    f"Every poll{' of this account' if whose else ''} is paused and retried with a growing "
                    f"pause. Fix <code>{key} (or <code>app_id</code>/<code>app_key</code>) and restart. "
                    "<code>/healthz</code> stays 200: restarting does not mend a token; "
                    "<code>atess_api_auth_ok</code> is 0."))
            failing = account.discovery_failed
            if failing is not None:
                kept = (f"The {len(own)} devices found before are still polled." if own
                        else "No device is known yet, so nothing is polled.")
                out.append(self._banner(f"{whose}Discovery fails", failing, now, kept))
            behind = self._behind(account.poll_stats)
            if behind:
                out.append(f'<div class="banner"><strong>{whose}Polling is behind schedule:</strong> {"; ".join(behind)}. '
                           "Raise <code>poll.max_concurrency</code>, or split the devices over replicas "
                           "(<code>--shard</code>).</div>")
        return out

    def _offline_datalogs(self) -> frozenset[str]:
        return frozenset().union(*(offline_datalogs(a.topology) for a in self.store.accounts()))

    def _behind(self, stats: PollStats | None) -> list[str]:
        """What the schedule measured that says polling does not keep up (live/schedule.py), in words."""
        if stats is None:
            return []
        interval = self.poll.interval_seconds
        said = []
        if stats.overdue:
            said.append(f"{stats.overdue} devices are more than one interval ({age_words(interval)}) late")
        if stats.sweep_seconds is not None and stats.sweep_seconds > interval * 1.5:
            said.append(f"the last sweep of every device took {age_words(stats.sweep_seconds)}")
        if stats.behind:
            per = f" at {stats.latency_seconds:.1f} s a poll" if stats.latency_seconds is not None else ""
            said.append(f"{stats.behind} devices do not fit into one interval{per} "
                        f"with {stats.concurrency} polls at once")
        return said

    def _banner(self, title: str, trouble: Trouble, now: float, advice: str) -> str:
        """The API's own words, quoted, without the advice the client appends (the banner gives its own)."""
        path, said = split_error(trouble.message)
        where = f" (<code>{self.text(path)}</code>)" if path else ""
        return (f'<div class="banner"><strong>{title}</strong> since {html_text(when(trouble.since, now))}: '
                f"<span class=\"said\">“{self.text(said)}”</span>{where}. {advice}</div>")

    # -- the fleet page --------------------------------------------------------------------

    def fleet(self, query: str) -> str:
        now = self.clock()
        args = query_args(query)
        devices = self.store.snapshot()
        offline = self._offline_datalogs()
        judged = [(verdict(d, now, self.poll, offline), d) for d in devices]
        parts = self.banners(devices, now)
        if self.demo:
            parts.append('<p class="note"><strong>Demo:</strong> these devices are simulated by the embedded '
                         "ATESS API simulator (<code>--demo</code>); no account is read.</p>")
        plant = args.get("plant", "")
        state = args.get("state", "") if args.get("state") in STATES else ""
        in_plant = [(v, d) for v, d in judged if not plant or plant_of(d)[0] == plant]
        parts.append(self._counts(in_plant, plant, state, len(devices)))
        if not devices:
            parts.append("<p>No device yet: discovery has not found any, or has not run yet.</p>")
            return "".join(parts)
        if not plant:
            parts.append(self._plants(judged))
        shown = [(v, d) for v, d in in_plant if not state or v.state == state]
        shown.sort(key=lambda vd: (STATES.index(vd[0].state), vd[1].sn))
        pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
        try:
            page = min(max(1, int(args.get("page", "1"))), pages)
        except ValueError:
            page = 1
        first = (page - 1) * PAGE_SIZE
        parts.append('<ul class="devs">')
        parts.extend(self._card(v, d, now) for v, d in shown[first:first + PAGE_SIZE])
        parts.append("</ul>")
        if not shown:
            parts.append("<p>No device in this selection.</p>")
        if pages > 1:
            parts.append(self._pager(plant, state, page, pages, len(shown)))
        return "".join(parts)

    def _link(self, **args: object) -> str:
        """A link to the fleet page with these filters (empty ones dropped), escaped for an attribute."""
        kept = {k: v for k, v in args.items() if v not in ("", None, 1)}
        return html_text("./?" + urlencode(kept) if kept else "./", 2 * MAX_QUERY)

    def _counts(self, judged: list[tuple[Verdict, DeviceSnapshot]], plant: str, state: str, total: int) -> str:
        counts = Counter(v.state for v, _ in judged)
        chips = [f'<a class="chip{" on" if not state else ""}" href="{self._link(plant=plant)}">'
                 f"<b>{len(judged)}</b> devices</a>"]
        for name in STATES:
            on = " on" if state == name else ""
            zero = " zero" if not counts.get(name) else ""
            chips.append(f'<a class="chip s-{name}{on}{zero}" href="{self._link(plant=plant, state=name)}">'
                         f"<b>{counts.get(name, 0)}</b> {name}</a>")
        head = ""
        if plant:
            name = next((plant_of(d)[1] for _, d in judged), plant)
            head = (f'<p>Plant <strong>{self.text(name)}</strong> ({len(judged)} of {total} devices) · '
                    f'<a href="{self._link(state=state)}">all plants</a></p>')
        problems = [f"{counts[name]} {name}" for name in STATES if name in PROBLEMS and counts.get(name)]
        if problems:
            line = (f'<p class="headline bad"><strong>{sum(counts[n] for n in PROBLEMS)} of {len(judged)} devices '
                    f'need attention:</strong> {", ".join(problems)}.</p>')
        elif judged:
            waiting = f" ({counts['pending']} not polled yet)" if counts.get("pending") else ""
            line = f'<p class="headline ok"><strong>No device has a problem</strong>{waiting}.</p>'
        else:
            line = ""
        return f'{head}{line}<nav class="chips">{"".join(chips)}</nav>'

    def _plants(self, judged: list[tuple[Verdict, DeviceSnapshot]]) -> str:
        per: dict[str, list] = {}
        for v, d in judged:
            key, name = plant_of(d)
            row = per.setdefault(key, [name, 0, 0])
            row[1] += 1
            row[2] += v.state in PROBLEMS
        if len(per) < 2:
            return ""
        ranked = sorted(per.items(), key=lambda kv: (-kv[1][2], kv[1][0], kv[0]))[:TOP_PLANTS]
        items = "".join(
            f'<li><a href="{self._link(plant=key)}">{self.text(name or "no plant")}</a> '
            f'<span class="{"bad" if problems else "ok"}">{problems} of {n} with problems</span></li>'
            for key, (name, n, problems) in ranked)
        troubled = sum(1 for _, _, problems in per.values() if problems)
        more = f", the {TOP_PLANTS} with the most problems listed" if len(per) > TOP_PLANTS else ""
        # Open when it is short and names a plant with problems; a long list stays one line (phones).
        opened = " open" if troubled and len(ranked) <= 6 else ""
        return (f'<details class="plants"{opened}><summary>{len(per)} plants, {troubled} with problems{more}'
                f"</summary><ul>{items}</ul></details>")

    def _card(self, v: Verdict, dev: DeviceSnapshot, now: float) -> str:
        key, name = plant_of(dev)
        plant = f' · <a href="{self._link(plant=key)}">{self.text(name)}</a>' if key else ""
        polled = f" · polled {age_words(now - dev.last_attempt)} ago" if dev.last_attempt is not None else ""
        href = html_text(f"device?sn={quote(dev.sn, safe='')}", 2 * MAX_QUERY)
        return (f'<li class="dev s-{v.state}"><div><a class="sn" href="{href}">{self.text(dev.sn)}</a> '
                f'<span class="badge s-{v.state}">{v.state}</span></div>'
                f'<div class="why">{self.text(v.reason)}</div>'
                f'<div class="meta">{self.text(dev.model)}{plant}{polled}</div></li>')

    def _pager(self, plant: str, state: str, page: int, pages: int, count: int) -> str:
        prev = f'<a href="{self._link(plant=plant, state=state, page=page - 1)}">‹ previous</a>' if page > 1 else ""
        nxt = f'<a href="{self._link(plant=plant, state=state, page=page + 1)}">next ›</a>' if page < pages else ""
        return (f'<nav class="pager">{prev} <span>page {page} of {pages} ({count} devices)</span> {nxt}</nav>')

    # -- one device ------------------------------------------------------------------------

    def device(self, query: str) -> tuple[int, str]:
        sn = query_args(query).get("sn", "")
        dev = self.store.get(sn) if sn else None
        if dev is None:
            return 404, (f"<p>No device <strong>{self.text(sn)}</strong> here.</p>"
                         '<p><a href="./">All devices</a></p>')
        now = self.clock()
        v = verdict(dev, now, self.poll, self._offline_datalogs())
        return 200, devicepage.render(self, dev, v, now)
