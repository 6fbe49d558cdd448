"""The market-data services: candles, order book and sentiment, and the feeds."""

__all__: list[str] = []
