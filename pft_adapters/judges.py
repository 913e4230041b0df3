"""Judges of open-ended answers: a 0-10 score for how strongly an answer expresses a pole.

Two kinds, called alike on a batch of `Judged` items: the zoo's mixing head
(`HeadJudge`: 10 x P(target pole), local, no network) and any OpenAI-compatible chat
endpoint (`ChatJudge`, standard library only) with a rubric per pole. `make_judge`
picks one from the CLI's `--judge` value.
"""

from __future__ import annotations

import bisect
import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import JSONError, PFTError, loads, quote, shorten
from .head import head_features
from .values import Pole

JUDGE_KEY_VARIABLES = ("PFT_JUDGE_API_KEY", "OPENAI_API_KEY")
MAX_JUDGE_REPLY = 8 * 2**20  # bytes: a chat completion holding a score is a few hundred
MAX_JUDGE_TIMEOUT = 86400.0  # seconds; sockets refuse far larger timeouts


@dataclass(frozen=True)
class Judged:
    """What a judge reads: the scenario, the answer, the pole asked for and its opposite."""

    scenario: str
    response: str
    pole: Pole
    other: Pole


Judge = Callable[[Sequence[Judged]], list[float]]


class HeadJudge:
    """The zoo's mixing head as a local judge: 10 x P(target pole) of the answer, read as the head was trained to."""

    name = "head"

    def __init__(self, mixed, batch_size: int = 16):
        if mixed.zoo.head is None:
            raise PFTError("this zoo has no mixing head to judge with: pass --judge URL --judge-model NAME")
        self.mixed, self.head, self.batch_size = mixed, mixed.zoo.head, batch_size

    @torch.no_grad()
    def __call__(self, items: Sequence[Judged]) -> list[float]:
        if not items:
            return []
        off = torch.zeros(self.mixed.adapters.n_poles)
        with self.mixed.adapters.weighted(off):  # the head was trained on the frozen base's (or its encoder's) features
            features = head_features(self.mixed.model, self.mixed.tokenizer, [i.response or " " for i in items],
                                     self.head.encoder, batch_size=self.batch_size)
        diff = self.head.pole_probabilities(features)  # P(first) - P(second) per dimension
        scores = []
        for row, item in zip(diff, items):
            dim = self._dimension(item.pole.slug)
            sign = 1.0 if self.head.pole_slugs[2 * dim] == item.pole.slug else -1.0
            scores.append(10.0 * (1.0 + sign * float(row[dim])) / 2.0)
        return scores

    def _dimension(self, pole: str) -> int:
        if pole not in self.head.pole_slugs:
            raise PFTError(f"the zoo's mixing head does not know pole '{pole}': judge with --judge URL instead")
        return self.head.pole_slugs.index(pole) // 2


def rubric(pole: Pole, other: Pole) -> str:
    """The judge's instructions for one pole."""
    return (
        "You rate how strongly a response to a scenario expresses one value.\n"
        f"The value: {pole.definition}\n"
        f"Its opposite: {other.definition}\n"
        f"Score 0 if the response fully expresses {other.name}, 5 if it expresses neither or both equally, "
        f"10 if it fully expresses {pole.name}. Reply with the number only (0-10)."
    )


# not part of 1e3, 7e-1, v2, 1.2.3, 7,5 or 3/10/2024; ASCII digits (runs of over 12, ids or counts, are blanked
# first, so the patterns built on this one stay linear)
_NUMBER = re.compile(r"(?<![\w.,/])(?<![eE][-+])[-+]?[0-9]+(?:\.[0-9]+)?(?![\w.,]*[0-9]|[eE][-+]?[0-9])")
_LONG_NUMBER = re.compile(r"[0-9]{13,}")
_SCALE = re.compile(r"\(?\b[01]\s*(?:-|–|to)\s*10\b\)?", re.IGNORECASE)  # "0-10", "1 to 10": the scale, not a score
_OUT_OF = re.compile(r"(" + _NUMBER.pattern + r")\s*(?:/|\bout of)\s*10\b(?!/[0-9])", re.IGNORECASE)  # "7/10", not 3/10/2024
_RANGE = re.compile(r"(" + _NUMBER.pattern + r")[ \t]*(?:-|–|\bto\b|\bor\b)[ \t]*(" + _NUMBER.pattern + ")",  # "7-8",
                    re.IGNORECASE)  # on one line ("Score: 7" then "- 2 risks" below is no range)
# "Score: 7", "final rating is 7", "I would give this response a 7", "rate it 9": the number a label names
_LABELLED = re.compile(r"\b(?:score|rating|final|give|rate|rated)\b(?:[^\w\n]|\b(?:answer|score|rating|is|of|it|"
                       r"this|the|response|a|an)\b){0,16}?(" + _NUMBER.pattern + ")", re.IGNORECASE)  # a short gap: linear time
_USER_INFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#]*@", re.IGNORECASE)  # user:password@ before the host


def parse_score(text: str) -> float:
    """The judge's 0-10 score: the number that a score, rating, final, give or rate label names; else an
    "N/10" or "N out of 10", or a number alone on a line; else the reply's one number.

    Anything else is refused rather than guessed at: marks of the first kind found that disagree ("Score: 7
    ... I would give it a 10 if ..."), a range ("7-8", "7 or 8"), several numbers none of them marked (the
    first and last are each the score in some replies and a count in others), a number outside [0, 10] (not
    clipped). Mentions of the scale itself ("0-10", "1 to 10") and a reasoning model's thinking are not scores.
    """
    text = text or ""
    reply = _LONG_NUMBER.sub(" ", _SCALE.sub(" ", _answer(text)))
    out_of: list[tuple[str, int]] = []  # (N, where N stands once every "/10" before it is cut)
    cut = 0

    def keep_number(m: re.Match) -> str:  # the 10 of "/10" is no candidate
        nonlocal cut
        out_of.append((m[1], m.start() - cut))
        cut += len(m[0]) - len(m[1])
        return m[1]

    reply = _OUT_OF.sub(keep_number, reply)
    labelled = [(m[1], m.start(1)) for m in _LABELLED.finditer(reply)]
    alone = [(line.strip().rstrip("."), -1) for line in reply.splitlines() if _NUMBER.fullmatch(line.strip().rstrip("."))]
    numbers = [(m[0], m.start()) for m in _NUMBER.finditer(reply)]
    if not numbers:
        raise PFTError(f"the judge's reply holds no 0-10 score: {_snippet(text)!r}; use a model that follows the rubric")
    found = labelled or out_of + alone or (numbers if len({float(n) for n, _ in numbers}) == 1 else [])
    if not found:
        raise PFTError(f"the judge's reply holds several numbers and none is marked as the score: {_snippet(text)!r}; "
                       "use a model that follows the rubric (the number only)")
    ranges = [m.span() for m in _RANGE.finditer(reply)]  # in order, apart; a number alone on its line (at -1) is in none
    if any(_within(at, ranges) for _, at in found):
        raise PFTError(f"the judge's reply gives a range, not one score: {_snippet(text)!r}; "
                       "use a model that follows the rubric (the number only)")
    marked = [n for n, _ in found]
    if len(set(map(float, marked))) > 1:
        raise PFTError(f"the judge's reply marks several scores ({', '.join(dict.fromkeys(marked))}): {_snippet(text)!r}; "
                       "use a model that follows the rubric (the number only)")
    value = float(marked[0])
    if not 0.0 <= value <= 10.0:
        raise PFTError(f"the judge's reply gives {marked[0]}, outside 0-10: {_snippet(text)!r}")
    return value


def _within(at: int, spans: Sequence[tuple[int, int]]) -> bool:
    """Whether position `at` falls in one of `spans` (in order, apart), by bisection: replies can be long."""
    k = bisect.bisect_right(spans, (at, math.inf)) - 1
    return k >= 0 and at < spans[k][1]


def _answer(text: str) -> str:
    """A reply without a reasoning model's thinking: everything up to the last </think> (the opening tag may be
    in the chat template, not the reply), and an unclosed <think> block after it."""
    lower = text.lower()
    end = lower.rfind("</think>")
    if end >= 0:
        text, lower = text[end + len("</think>"):], lower[end + len("</think>"):]
    start = lower.find("<think>")
    return text if start < 0 else text[:start]


def _snippet(text: str | None, width: int = 120) -> str:
    return shorten(" ".join((text or "").split()), width)


def judge_api_key() -> str | None:
    """The judge's API key from the environment (PFT_JUDGE_API_KEY, else OPENAI_API_KEY), or None."""
    for name in JUDGE_KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return None


class ChatJudge:
    """Any OpenAI-compatible chat endpoint as the judge: POST {url}/chat/completions, one request per answer.

    Standard library only (urllib). Up to `workers` requests are in flight at once (a
    remote judge answers one by one far slower than it serves several). Failures (unreachable, timeout, HTTP error, a reply
    without a 0-10 number) raise one-line `PFTError`s; server errors and timeouts are
    tried `retries` more times first. Redirects are not followed (the API key would go
    along to wherever they point), and the key never appears in a message: messages and results
    name the endpoint (`name`) without the URL's query string, which may hold a key too.
    """

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 1,
                 workers: int = 4):
        if _USER_INFO.search(url):  # not quoted: it would show a password
            raise PFTError("the --judge URL holds a user name or password (user:password@), which no request carries "
                           f"and messages and results would show: remove it and set {' or '.join(JUDGE_KEY_VARIABLES)} "
                           "to the API key")
        if not _is_http_url(url):
            shown = quote(re.sub(r"(?<=://).*@", "***@", url, flags=re.DOTALL))  # whatever precedes an @ may be a password
            raise PFTError(f"--judge {shown} is neither 'head' nor an http(s) URL of an OpenAI-compatible API "
                           "(like http://localhost:8000/v1)")
        if not 0 < timeout <= MAX_JUDGE_TIMEOUT:  # `not` also refuses NaN
            raise PFTError(f"--judge-timeout must be a positive number of seconds, at most {MAX_JUDGE_TIMEOUT:g} (a day), "
                           f"got {timeout:g}")
        if not model:
            raise PFTError("--judge URL needs --judge-model NAME: the model the endpoint should run")
        if workers < 1:
            raise PFTError(f"--judge-workers must be at least 1, got {workers}")
        parts = urllib.parse.urlsplit(url)
        path = parts.path.rstrip("/")
        path = path if path.endswith("/chat/completions") else path + "/chat/completions"
        self.endpoint = urllib.parse.urlunsplit(parts._replace(path=path))  # a query string stays after the path
        self.name = urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))  # shown and saved: no query
        self.model, self.timeout, self.retries, self.workers = model, timeout, retries, workers
        key = (api_key if api_key is not None else judge_api_key() or "").strip()  # a pasted key may end in a newline
        if any(ord(c) < 32 or ord(c) > 255 for c in key):
            raise PFTError(f"the judge's API key ({' or '.join(JUDGE_KEY_VARIABLES)}) holds a control or non-Latin-1 "
                           "character, which no HTTP header carries: set the variable to the key alone")
        self.api_key = key or None
        # a query string may hold a key too (?key=...): it and its values long enough to be one (not "?v=1", whose
        # blanking would garble every 1) are blanked in whatever a server sends back, like the API key
        values = [v for _, v in urllib.parse.parse_qsl(parts.query) if len(v) >= 8]
        self._secrets = [s for s in (self.api_key, parts.query, *values) if s]

    def request(self, item: Judged) -> dict:
        return {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": rubric(item.pole, item.other)},
                {"role": "user", "content": f"Scenario: {item.scenario}\n\nResponse: {item.response}\n\nScore (0-10):"},
            ],
        }

    def score(self, item: Judged) -> float:
        reply = self._post(self.request(item))
        try:
            message = reply["choices"][0]["message"]
            content = message["content"]
        except (KeyError, IndexError, TypeError):
            raise PFTError(f"judge {self.name} returned no chat completion: {_snippet(self._redacted(json.dumps(reply)))!r}") from None
        if content is None and isinstance(message, dict) and message.get("refusal"):
            raise PFTError(f"judge {self.name} refused to score: {_snippet(self._redacted(str(message['refusal'])))!r}; "
                           "use another model")
        if isinstance(content, list):  # content parts (the OpenAI form): the text parts are the answer, thinking is not
            parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
            texts = [p["text"] for p in parts if isinstance(p.get("text"), str)]
            content = "\n".join(texts) if texts and len(texts) == len(parts) else None
        if not isinstance(content, str):
            raise PFTError(f"judge {self.name} returned no text to score: {_snippet(self._redacted(json.dumps(message)))!r}")
        return parse_score(self._redacted(content))

    def __call__(self, items: Sequence[Judged]) -> list[float]:
        """Scores in the order of `items`; the first failure is raised once the requests in flight end."""
        if self.workers == 1 or len(items) < 2:
            return [self.score(item) for item in items]
        return _in_threads(self.score, items, self.workers)

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode("utf-8")
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            request = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
            try:
                body = self._exchange(request)
                if len(body) > MAX_JUDGE_REPLY:
                    raise PFTError(f"judge {self.name} sent a reply over {MAX_JUDGE_REPLY // 2**20} MB: "
                                   "check that the --judge URL is a chat-completions API")
            except _ErrorStatus as err:
                detail = _snippet(self._redacted(err.body))
                if 300 <= err.code < 400:
                    raise PFTError(f"judge {self.name} redirects (HTTP {err.code}) to "
                                   f"{_snippet(self._redacted(err.headers.get('Location') or '?'))}: give that URL as --judge") from None
                if err.code in (429, 500, 502, 503, 504) and not last:
                    time.sleep(_retry_delay(err, attempt, self.timeout))
                    continue
                hint = " (check the API key: PFT_JUDGE_API_KEY or OPENAI_API_KEY)" if err.code in (401, 403) else ""
                raise PFTError(f"judge {self.name} answered HTTP {err.code}{hint}: {detail!r}") from None
            except (TimeoutError, socket.timeout):
                if not last:
                    continue
                raise PFTError(f"judge {self.name} did not answer within {self.timeout:g}s: raise --judge-timeout or check the server") from None
            except urllib.error.URLError as err:
                raise PFTError(f"judge {self.name} is unreachable ({_snippet(str(err.reason))}): check the --judge URL") from None
            except (http.client.HTTPException, OSError) as err:  # closed without a reply, not HTTP at all, a TLS error
                if not last:
                    continue
                raise PFTError(f"judge {self.name} gave no HTTP reply ({type(err).__name__}: {_snippet(self._redacted(str(err)))}): "
                               "check that the --judge URL is an OpenAI-compatible server") from None
            except (ValueError, UnicodeError) as err:  # a URL urllib cannot send; the message may quote headers
                raise PFTError(f"cannot send a request to judge {self.name} ({type(err).__name__}): "
                               "check the --judge URL") from None
            try:
                reply = loads(body.decode("utf-8-sig"), allow_nan=True)  # a key given twice is refused, as in a user's JSON
            except (JSONError, UnicodeDecodeError):
                raise PFTError(f"judge {self.name} did not return JSON: {_snippet(self._redacted(body))!r}") from None
            if not isinstance(reply, dict):
                raise PFTError(f"judge {self.name} returned no chat completion: {_snippet(self._redacted(body))!r}")
            return reply
        raise AssertionError("unreachable")

    def _exchange(self, request: urllib.request.Request) -> bytes:
        """The reply's body (up to one byte over the limit), the whole exchange within the timeout (an error
        status's body too: `_ErrorStatus`).

        A server that trickles even its status line or headers is cut off: its socket is shut
        when the time is up (the socket's own timeout bounds each read alone, and a TLS handshake
        as a whole), and what that breaks is reported as the timeout it is, as is a connection or
        handshake that times out on its own.
        """
        deadline = _Deadline(self.timeout)
        try:
            with deadline.opener().open(request, timeout=self.timeout) as response:
                body = response.read(MAX_JUDGE_REPLY + 1)
        except urllib.error.HTTPError as err:
            raise _ErrorStatus(err) from None
        except (OSError, http.client.HTTPException) as err:
            if deadline.expired or isinstance(getattr(err, "reason", None), TimeoutError):  # urllib wraps what it opens
                raise TimeoutError from None
            raise
        finally:
            deadline.cancel()
        if deadline.expired:  # the body was cut short
            raise TimeoutError
        return body

    def _redacted(self, text: str | bytes) -> str:
        """A server's text with the API key and the URL's query blanked out (some error pages echo the request)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _in_threads(fn: Callable[[Judged], float], items: Sequence[Judged], workers: int) -> list[float]:
    """`[fn(x) for x in items]` on `workers` threads; no call starts after one fails, and the first failure (in
    the order of `items`) is raised once the calls in flight end.

    The threads are daemons, unlike a ThreadPoolExecutor's, so they do not hold the process
    at exit: after Ctrl-C an evaluation reports what it kept and ends without waiting for the
    requests in flight.
    """
    results: list[float] = [0.0] * len(items)
    failures: dict[int, BaseException] = {}
    pending = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = None if failures else next(pending, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as err:  # raised again in the caller's thread
                with lock:
                    failures[i] = err

    threads = [threading.Thread(target=work, daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[min(failures)]
    return results


class _Deadline:
    """One request's time limit, kept by shutting its socket when the time is up."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.expired = False  # the socket was shut: whatever broke, the time was up
        self._timers: list[threading.Timer] = []

    def watch(self, sock: socket.socket) -> None:
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._shut, (sock,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _shut(self, sock: socket.socket) -> None:
        self.expired = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies from the environment included), its connections watched, redirects refused."""
        deadline = self

        def watched(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
            class Watched(base):  # type: ignore[valid-type, misc]  # a subclass of the class given
                def connect(self) -> None:
                    super().connect()
                    deadline.watch(self.sock)
            return Watched

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(watched(http.client.HTTPSConnection), req, context=ssl.create_default_context())

        return urllib.request.build_opener(_RefuseRedirects, HTTP, HTTPS)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Leave a redirect as an HTTP error: following it would send the key to another server, and POST as GET."""

    def redirect_request(self, *args, **kwargs):
        return None


def _retry_delay(err: _ErrorStatus, attempt: int, cap: float) -> float:
    """Seconds to wait before trying again: the server's Retry-After when it gives seconds, at most `cap`."""
    try:
        return min(cap, max(0.0, float(err.headers.get("Retry-After", ""))))
    except (TypeError, ValueError):
        return 0.5 * (attempt + 1)


class _ErrorStatus(Exception):
    """An HTTP error status with the start of its body, read within the request's deadline (a server may
    trickle an error page too); the body is empty when the server stalls or closes while sending it."""

    def __init__(self, err: urllib.error.HTTPError):
        super().__init__(err.code)
        self.code, self.headers = err.code, err.headers
        try:
            self.body: bytes = err.read(4096) or b""
        except (OSError, http.client.HTTPException):
            self.body = b""


def _is_http_url(url: str) -> bool:
    """An http(s) URL with a host, a valid port if any, and no whitespace (urllib would fail on it later)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and url.isprintable()  # no control characters
            and not any(c.isspace() for c in url))


def make_judge(mixed, judge: str = "head", model: str | None = None, timeout: float = 60.0, workers: int = 4) -> Judge:
    """`head` (the zoo's mixing head, read from `mixed`) or the URL of an OpenAI-compatible API (`mixed` unused)."""
    if judge == "head":
        if model:
            raise PFTError("--judge-model goes with --judge URL; the head judge needs no model name")
        return HeadJudge(mixed)
    return ChatJudge(judge, model or "", timeout=timeout, workers=workers)
