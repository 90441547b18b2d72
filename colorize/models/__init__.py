"""The generators, the tagger and the line extractor (one module per method)."""
