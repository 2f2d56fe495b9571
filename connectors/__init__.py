"""Everything that turns bytes from outside into Arrow: sources and decoders."""
