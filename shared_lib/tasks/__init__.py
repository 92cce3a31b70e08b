"""Generated tasks and offline corpora: data that needs no download (chapters 02-08)."""
