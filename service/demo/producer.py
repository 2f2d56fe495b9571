"""A live producer of realistic market data for the demo topics.

Trades are appended; quotes are upserted per symbol (message key = symbol),
and now and then a symbol is halted (a tombstone deletes its row) and later
quoted again, so the demo shows every kind of change a table can see.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

import orjson
from confluent_kafka import Producer

from connectors.kafkalog import LibrdkafkaLog

SYMBOLS = {
    "AAPL": 228.0,
    "MSFT": 415.0,
    "NVDA": 135.0,
    "AMZN": 205.0,
    "GOOG": 172.0,
    "META": 560.0,
    "TSLA": 250.0,
    "JPM": 215.0,
    "V": 280.0,
    "XOM": 118.0,
    "UNH": 590.0,
    "KO": 63.0,
    "PEP": 165.0,
    "NFLX": 690.0,
    "AMD": 155.0,
    "INTC": 22.0,
    "BA": 160.0,
    "DIS": 95.0,
    "NKE": 78.0,
    "SBUX": 98.0,
}
VENUES = ("XNAS", "XNYS", "BATS", "IEXG", "EDGX")
TRADES_TOPIC = "demo.trades"
QUOTES_TOPIC = "demo.quotes"


class MarketSimulator:
    """Random-walk prices; produces trade and quote records as JSON bytes."""

    def __init__(self, seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.prices = dict(SYMBOLS)
        self.halted: dict[str, float] = {}

    def _move(self, sym: str) -> float:
        price = self.prices[sym] * (1 + self.random.gauss(0, 0.0008))
        self.prices[sym] = max(price, 0.5)
        return self.prices[sym]

    def trade(self, now_ms: int) -> tuple[bytes, bytes]:
        sym = self.random.choice(list(SYMBOLS))
        px = self._move(sym)
        record = {
            "id": uuid.UUID(int=self.random.getrandbits(128)).hex[:16],
            "ts": now_ms,
            "sym": sym,
            "side": self.random.choice(("buy", "sell")),
            "px": round(px, 2),
            "qty": self.random.choice((1, 5, 10, 25, 50, 100, 200, 500)),
            "venue": self.random.choice(VENUES),
        }
        return sym.encode(), orjson.dumps(record)

    def quote(self, now_ms: int) -> tuple[bytes, bytes | None]:
        """A quote, or (rarely) a halt: a tombstone that removes the symbol's row."""
        now = now_ms / 1000
        for sym, until in list(self.halted.items()):
            if now >= until:
                del self.halted[sym]
        sym = self.random.choice(list(SYMBOLS))
        if sym in self.halted:
            return sym.encode(), None
        if self.random.random() < 0.003:
            self.halted[sym] = now + self.random.uniform(3, 10)
            return sym.encode(), None
        mid = self._move(sym)
        spread = max(0.01, round(mid * 0.0002, 2))
        record = {
            "sym": sym,
            "ts": now_ms,
            "bid": round(mid - spread / 2, 2),
            "ask": round(mid + spread / 2, 2),
            "bid_size": self.random.randint(1, 50) * 100,
            "ask_size": self.random.randint(1, 50) * 100,
        }
        return sym.encode(), orjson.dumps(record)


class DemoProducer:
    """Produces a backlog, then a steady live stream, until stopped."""

    def __init__(
        self,
        bootstrap: str,
        trades_per_second: float = 400.0,
        quotes_per_second: float = 200.0,
        seed: int | None = None,
    ) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "linger.ms": 20,
                "compression.type": "lz4",
                # Its librdkafka lines (a broker going away at shutdown) go to the log, not stderr.
                "logger": LibrdkafkaLog("", "", client="demo producer"),
            }
        )
        self.market = MarketSimulator(seed)
        self.trades_per_second = trades_per_second
        self.quotes_per_second = quotes_per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-producer", daemon=True)
        self.produced = 0

    def backlog(self, trades: int, quotes: int, span_s: float = 3600.0) -> None:
        """Records spread over the last ``span_s`` seconds, so lookback policies have history."""
        now_ms = int(time.time() * 1000)
        for i in range(trades):
            ts = now_ms - int(span_s * 1000 * (1 - i / max(trades, 1)))
            key, value = self.market.trade(ts)
            self.producer.produce(TRADES_TOPIC, value, key, timestamp=ts)
            if i % 10000 == 0:
                self.producer.poll(0)
        for i in range(quotes):
            ts = now_ms - int(span_s * 1000 * (1 - i / max(quotes, 1)))
            key, quote = self.market.quote(ts)
            self.producer.produce(QUOTES_TOPIC, quote, key, timestamp=ts)
        self.producer.flush(30)
        self.produced += trades + quotes

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(5)

    def _run(self) -> None:
        tick = 0.05
        trade_credit = quote_credit = 0.0
        while not self._stop.wait(tick):
            now_ms = int(time.time() * 1000)
            trade_credit += self.trades_per_second * tick * self.market.random.uniform(0.3, 1.7)
            quote_credit += self.quotes_per_second * tick
            while trade_credit >= 1:
                trade_credit -= 1
                key, value = self.market.trade(now_ms)
                self.producer.produce(TRADES_TOPIC, value, key, timestamp=now_ms)
                self.produced += 1
            while quote_credit >= 1:
                quote_credit -= 1
                key, quote = self.market.quote(now_ms)
                self.producer.produce(QUOTES_TOPIC, quote, key, timestamp=now_ms)
                self.produced += 1
            self.producer.poll(0)
