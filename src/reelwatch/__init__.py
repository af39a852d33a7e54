"""reelwatch: run asynchronous AI video generation in production."""

__version__ = "0.1.0"
